"""The prediction cache: one served version's answers by request, bounded, expiring, and
dropped with the version.

    cache = PredictionCache("churn@3", CachePolicy(ttl_s=60, max_entries=10_000), metrics)
    key = entity_key(generation, {"customer_id": 7})   # or tensor_key(x) for /v2 inputs
    cache.get(key)                                      # the answer, or None
    cache.put(key, 0.83)
    cache.close()                                       # swapped out: drop all, take nothing

Keys never name the version: each `ServedVersion` owns its cache, so a champion, its canary
and its shadow keep their own entries and a version swap can't serve one's answer for
another (the new version starts empty). Entity keys carry the feature service's
materialization generation as the lookup knew it *before* the features were read: a value
stored under generation ``g`` was computed from features at least as new as ``g``, and once
new data lands requests look up under the new generation, so nothing older is served.

Everything here runs on the event loop (no await between routing a request and answering it
from the cache, so a route swap can't slip between them); the clock is injected.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol

import torch

from serving.config import CachePolicy


def entity_key(generation: Hashable, entity: Mapping[str, Any]) -> Hashable:
    """An entity request's key: the features' generation and the entity's keys in name order.
    ``1`` and ``1.0`` are one key (they name the same row); ``True`` and ``1`` are not."""
    return (generation, tuple(sorted((k, type(v) is bool, v) for k, v in entity.items())))


def tensor_key(tensor: torch.Tensor) -> bytes:
    """A /v2 request's key: a digest of its input tensor's dtype, shape and bytes."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


class CacheMetrics(Protocol):
    """What the cache reports; `serving.metrics.ServingMetrics` implements it."""

    def cache_lookups(self, ref: str, hits: int, misses: int) -> None: ...

    def cache_stored(self, ref: str, entries: int, evicted: int) -> None: ...


class PredictionCache:
    """A bounded LRU of one version's answers, each kept ``policy.ttl_s`` seconds."""

    def __init__(
        self,
        ref: str,
        policy: CachePolicy,
        metrics: CacheMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ref, self.policy, self.clock = ref, policy, clock
        self._metrics = metrics
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.closed = False
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: list[Hashable]) -> list[Any]:
        """Each key's answer, or None (absent, expired, or the cache is closed)."""
        now = self.clock()
        entries = self._entries
        out: list[Any] = []
        hits = 0
        for key in keys:
            found = entries.get(key)
            if found is None or self.closed:
                out.append(None)
                continue
            expires_at, value = found
            if expires_at <= now:
                del entries[key]
                out.append(None)
                continue
            entries.move_to_end(key)
            out.append(value)
            hits += 1
        self.hits += hits
        self.misses += len(keys) - hits
        if self._metrics is not None:
            self._metrics.cache_lookups(self.ref, hits, len(keys) - hits)
        return out

    def get(self, key: Hashable) -> Any:
        return self.get_many([key])[0]

    def put_many(self, items: list[tuple[Hashable, Any]]) -> None:
        """Keep each answer (never None); past ``max_entries`` the least recently used go."""
        if self.closed or not items:
            return
        expires_at = self.clock() + self.policy.ttl_s
        entries = self._entries
        for key, value in items:
            entries[key] = (expires_at, value)
            entries.move_to_end(key)
        evicted = max(0, len(entries) - self.policy.max_entries)
        for _ in range(evicted):
            entries.popitem(last=False)
        self.evictions += evicted
        if self._metrics is not None:
            self._metrics.cache_stored(self.ref, len(entries), evicted)

    def put(self, key: Hashable, value: Any) -> None:
        self.put_many([(key, value)])

    def peek(self) -> dict[Hashable, Any]:
        """Every live entry (for tests and /v1/serving/state), not counted as lookups."""
        now = self.clock()
        return {k: v for k, (expires_at, v) in self._entries.items() if expires_at > now}

    def close(self) -> None:
        """The version was swapped out: drop every entry; later puts are ignored (an answer
        computed before the swap finishing after it)."""
        self.closed = True
        self._entries.clear()
        if self._metrics is not None:
            self._metrics.cache_stored(self.ref, 0, 0)

    def reopen(self) -> None:
        """Take answers again (a standby version back in service), starting empty."""
        self._entries.clear()
        self.closed = False
