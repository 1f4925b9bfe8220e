from __future__ import annotations

import pytest

from features.cache import MISS, Entry, Hit, LruCache, Miss, Stale, decide


def entry(fetched_at: float = 100.0, generation: int = 0, value: object = "v") -> Entry:
    return Entry(value, fetched_at, generation)


def test_absent_is_a_miss() -> None:
    assert decide(None, now=100.0, ttl_s=60, generation=0) is MISS


def test_young_entry_of_the_current_generation_is_a_hit() -> None:
    e = entry(fetched_at=100.0)
    assert decide(e, now=100.0, ttl_s=60, generation=0) == Hit(e)
    assert decide(e, now=159.9, ttl_s=60, generation=0) == Hit(e)


def test_entry_expires_at_exactly_its_ttl() -> None:
    e = entry(fetched_at=100.0)
    assert decide(e, now=160.0, ttl_s=60, generation=0, max_staleness_s=300) == Stale(e)


def test_entry_of_an_older_generation_is_stale_however_young() -> None:
    e = entry(fetched_at=100.0, generation=3)
    assert decide(e, now=100.0, ttl_s=60, generation=4, max_staleness_s=300) == Stale(e)


def test_entry_past_max_staleness_is_a_miss() -> None:
    e = entry(fetched_at=100.0)
    assert decide(e, now=400.0, ttl_s=60, generation=0, max_staleness_s=300) == Stale(e)
    assert isinstance(decide(e, now=400.1, ttl_s=60, generation=0, max_staleness_s=300), Miss)


def test_zero_ttl_never_hits() -> None:
    e = entry(fetched_at=100.0)
    assert isinstance(decide(e, now=100.0, ttl_s=0, generation=0), Stale)


def test_clock_stepping_back_does_not_make_data_younger_than_zero() -> None:
    e = entry(fetched_at=100.0)
    assert decide(e, now=90.0, ttl_s=60, generation=0) == Hit(e)
    assert decide(e, now=90.0, ttl_s=0, generation=0) == Stale(e)


def test_negative_result_is_cached_like_any_value() -> None:
    e = entry(value=None)
    assert decide(e, now=110.0, ttl_s=60, generation=0) == Hit(e)


def test_lru_evicts_the_least_recently_used_past_the_bound() -> None:
    cache: LruCache[str] = LruCache(max_entries=2)
    assert cache.put("a", entry()) == 0
    assert cache.put("b", entry()) == 0
    assert isinstance(cache.lookup("a", 101.0, 60, 0), Hit)  # "a" is now the young end
    assert cache.put("c", entry()) == 1
    assert "b" not in cache
    assert "a" in cache
    assert "c" in cache
    assert len(cache) == 2


def test_a_stale_lookup_does_not_refresh_recency() -> None:
    cache: LruCache[str] = LruCache(max_entries=2)
    cache.put("a", entry(fetched_at=0.0))
    cache.put("b", entry(fetched_at=100.0))
    assert isinstance(cache.lookup("a", 100.0, 60, 0), Stale)
    cache.put("c", entry())
    assert "a" not in cache


def test_lookup_drops_an_entry_too_old_to_serve() -> None:
    cache: LruCache[str] = LruCache(max_entries=4)
    cache.put("a", entry(fetched_at=0.0))
    assert isinstance(cache.lookup("a", 1000.0, 60, 0, max_staleness_s=300), Miss)
    assert "a" not in cache


def test_put_replaces_an_existing_key() -> None:
    cache: LruCache[str] = LruCache(max_entries=1)
    cache.put("a", entry(value=1))
    assert cache.put("a", entry(value=2)) == 0
    got = cache.peek("a")
    assert got is not None
    assert got.value == 2


def test_explicit_invalidation() -> None:
    cache: LruCache[tuple[str, int]] = LruCache(max_entries=10)
    for i in range(3):
        cache.put(("s1", i), entry())
        cache.put(("s2", i), entry())
    assert cache.invalidate(("s1", 0))
    assert not cache.invalidate(("s1", 0))
    assert cache.invalidate_where(lambda key: key[0] == "s2") == 3
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        LruCache(max_entries=0)
