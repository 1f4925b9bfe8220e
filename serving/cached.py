"""A request's way through its version's prediction cache: which rows the cache answers,
which go to the model, and which answers are kept.

    share = EntityShare(served, entities)       # looks every entity up in served's cache
    share.payload                                # EntityRows of the misses (None: all hit)
    values = share.values(outputs)               # every entity's prediction, in order;
                                                 # computed ones are kept (not stale ones)
    share.cached                                 # indexes answered from the cache

    hit = cached_output(served, tensor)          # /v2: the whole request's outputs, or None

Nothing here awaits: a request is routed, answered from the cache or submitted in one go on
the event loop, so a version swap can't come between them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch

from serving.cache import tensor_key
from serving.protocol import prediction_values
from serving.served import EntityRows, ServedVersion

CACHE_HEADER = "X-Prediction-Cache"  # hit, partial or miss, on answers of a cached version


class EntityShare:
    """The entities of one request routed to one version, looked up in its cache."""

    __slots__ = ("_hits", "cached", "entities", "keys", "missing", "payload", "served")

    def __init__(self, served: ServedVersion, entities: list[dict[str, Any]]) -> None:
        self.served, self.entities = served, entities
        self.keys = served.entity_keys(entities)
        if self.keys is None or served.cache is None:
            self._hits: list[Any] = [None] * len(entities)
        else:
            self._hits = served.cache.get_many(self.keys)
        self.missing = [j for j, hit in enumerate(self._hits) if hit is None]
        self.cached = [j for j, hit in enumerate(self._hits) if hit is not None]
        if self.cached:
            served.answered_from_cache(len(self.cached))
        self.payload = EntityRows([entities[j] for j in self.missing]) if self.missing else None

    def values(self, outputs: torch.Tensor | None) -> list[Any]:
        """Every entity's prediction in order: cached ones as they were, the others from
        ``outputs`` (the model's answer to `payload`), which are kept unless their features
        were served stale (an answer from stale features must not outlive the outage)."""
        out = list(self._hits)
        if outputs is None or self.payload is None:
            return out
        computed = prediction_values(outputs)
        stale = self.payload.stale.get(self.served.ref, {})
        keep: list[tuple[Hashable, Any]] = []
        for local, (j, value) in enumerate(zip(self.missing, computed, strict=True)):
            out[j] = value
            if self.keys is not None and local not in stale:
                keep.append((self.keys[j], value))
        if keep and self.served.cache is not None:
            self.served.cache.put_many(keep)
        return out


def cached_output(served: ServedVersion, tensor: torch.Tensor) -> tuple[Hashable, Any]:
    """(key, outputs) of a /v2 request in ``served``'s cache: outputs None on a miss, key None
    when the version has no cache."""
    if served.cache is None:
        return None, None
    key = tensor_key(tensor)
    hit = served.cache.get(key)
    if hit is not None:
        served.answered_from_cache(int(tensor.shape[0]))
    return key, hit


def keep_output(served: ServedVersion, key: Hashable, outputs: torch.Tensor) -> None:
    if key is not None and served.cache is not None:
        served.cache.put(key, outputs)


def cache_state(hits: int, total: int) -> str:
    return "hit" if hits == total else "partial" if hits else "miss"
