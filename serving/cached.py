"""A request's way through its version's prediction cache: which rows the cache answers,
which go to the model, and which answers are kept.

    share = EntityShare(served, entities)       # looks every entity up in served's cache
    await ask_shared([share, ...])               # local misses, in Redis: one MGET for all
    share.payload                                # EntityRows of the misses (None: all hit)
    values = share.values(outputs)               # every entity's prediction, in order;
                                                 # computed ones are kept (not stale ones)
    share.cached                                 # indexes answered from the cache

    key, hit = cached_output(served, tensor)     # /v2: the whole request's outputs, or None
    hit = await shared_output(served, key, rows) # a local miss, in Redis

Only the shared tier (`serving.shared_cache`) awaits. Without it a request is routed,
answered from the cache or submitted in one go on the event loop, so a version swap can't
come between them. With it the handler routes again once Redis has answered and starts
over, local tier only, if the route changed meanwhile (`serving.app`): what it submits is
always submitted to the version routed to last, with no await in between. An answer read
from Redis is the routed version's own, as its key names the version.
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
        self._settle(self._hits)

    def _settle(self, found: list[Any]) -> None:
        """Take the answers ``found`` (a hit or None per entity), counted as predictions."""
        pairs = zip(self._hits, found, strict=True)
        self._hits = [hit if hit is not None else new for hit, new in pairs]
        added = sum(1 for hit in found if hit is not None)
        if added:
            self.served.answered_from_cache(added)
        self.missing = [j for j, hit in enumerate(self._hits) if hit is None]
        self.cached = [j for j, hit in enumerate(self._hits) if hit is not None]
        entities = self.entities
        self.payload = EntityRows([entities[j] for j in self.missing]) if self.missing else None

    @property
    def shared_keys(self) -> list[Hashable]:
        """The keys to ask the shared tier for: the local tier's misses, if it is shared."""
        if self.keys is None or self.served.shared is None:
            return []
        return [self.keys[j] for j in self.missing]

    def take_shared(self, found: list[Any]) -> None:
        """The shared tier's answers to `shared_keys`: kept locally too, and used."""
        assert self.keys is not None
        assert self.served.cache is not None
        hits: list[Any] = [None] * len(self._hits)
        keep: list[tuple[Hashable, Any]] = []
        for j, value in zip(self.missing, found, strict=True):
            if value is not None:
                hits[j] = value
                keep.append((self.keys[j], value))
        self.served.cache.put_many(keep)
        self._settle(hits)

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
            self.served.share(keep)
        return out


async def ask_shared(shares: list[EntityShare]) -> None:
    """Look the local misses of every share up in the shared tier, in one round trip (all the
    shares of a request use one replica's Redis)."""
    asking = [(share, share.shared_keys) for share in shares]
    asking = [(share, keys) for share, keys in asking if keys]
    if not asking:
        return
    shared = asking[0][0].served.shared
    assert shared is not None
    wanted = [(share.served.ref, key) for share, keys in asking for key in keys]
    found = await shared.get_many(wanted)
    cursor = 0
    for share, keys in asking:
        share.take_shared(found[cursor : cursor + len(keys)])
        cursor += len(keys)


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


async def shared_output(served: ServedVersion, key: Hashable, rows: int) -> Any:
    """A /v2 local miss's outputs from the shared tier (kept locally too), or None."""
    if key is None or served.shared is None or served.cache is None:
        return None
    [hit] = await served.shared.get_many([(served.ref, key)])
    if not isinstance(hit, torch.Tensor):
        return None
    served.cache.put(key, hit)
    served.answered_from_cache(rows)
    return hit


def keep_output(served: ServedVersion, key: Hashable, outputs: torch.Tensor) -> None:
    if key is not None and served.cache is not None:
        served.cache.put(key, outputs)
        served.share([(key, outputs)])


def cache_state(hits: int, total: int) -> str:
    return "hit" if hits == total else "partial" if hits else "miss"
