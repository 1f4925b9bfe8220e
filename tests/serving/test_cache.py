"""The prediction cache alone: bounds, expiry, closing, keys. No server, an injected clock."""

from __future__ import annotations

import torch

from serving.cache import PredictionCache, entity_key, tensor_key
from serving.config import CachePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Counts:
    def __init__(self) -> None:
        self.hits = self.misses = self.evicted = 0
        self.entries = -1

    def cache_lookups(self, ref: str, hits: int, misses: int) -> None:
        self.hits += hits
        self.misses += misses

    def cache_stored(self, ref: str, entries: int, evicted: int) -> None:
        self.entries = entries
        self.evicted += evicted


def test_least_recently_used_answers_are_evicted_past_max_entries() -> None:
    counts = Counts()
    cache = PredictionCache("m@1", CachePolicy(ttl_s=60, max_entries=2), counts, Clock())
    cache.put("a", 1.0)
    cache.put("b", 2.0)
    assert cache.get("a") == 1.0  # a is now the most recently used
    cache.put("c", 3.0)
    assert cache.get_many(["a", "b", "c"]) == [1.0, None, 3.0]
    assert (len(cache), counts.evicted, counts.entries) == (2, 1, 2)
    assert (counts.hits, counts.misses) == (3, 1)


def test_answers_expire_after_ttl() -> None:
    clock = Clock()
    cache = PredictionCache("m@1", CachePolicy(ttl_s=5, max_entries=10), clock=clock)
    cache.put("a", 1.0)
    clock.now += 4.9
    assert cache.get("a") == 1.0
    clock.now += 0.2
    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_closed_cache_answers_nothing_and_keeps_nothing_until_reopened() -> None:
    cache = PredictionCache("m@1", CachePolicy(), clock=Clock())
    cache.put("a", 1.0)
    cache.close()
    cache.put("b", 2.0)  # computed before the swap, finished after it
    assert cache.get_many(["a", "b"]) == [None, None]
    cache.reopen()
    assert cache.get("a") is None
    cache.put("a", 5.0)
    assert cache.get("a") == 5.0


def test_entity_keys_name_generation_and_keys_in_order() -> None:
    assert entity_key(1, {"a": 1, "b": 2}) == entity_key(1, {"b": 2, "a": 1})
    assert entity_key(1, {"a": 1}) == entity_key(1, {"a": 1.0})
    assert entity_key(1, {"a": 1}) != entity_key(1, {"a": True})
    assert entity_key(1, {"a": 1}) != entity_key(2, {"a": 1})
    assert entity_key(1, {"a": 1}) != entity_key(1, {"a": "1"})


def test_tensor_keys_differ_by_values_dtype_and_shape() -> None:
    x = torch.arange(6, dtype=torch.float32)
    assert tensor_key(x.reshape(2, 3)) == tensor_key(x.clone().reshape(2, 3))
    assert tensor_key(x.reshape(2, 3)) != tensor_key(x.reshape(3, 2))
    assert tensor_key(x) != tensor_key(x.double())
    assert tensor_key(x) != tensor_key(x + 1)
