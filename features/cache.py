"""The feature cache's core: a bounded LRU map and the hit/miss/stale decision, no threads.

    cache = LruCache(max_entries=100_000)
    cache.put(key, Entry(value, fetched_at=now, generation=0))
    match cache.lookup(key, now, ttl_s=60, generation=0, max_staleness_s=300):
        case Hit(entry): ...    # fresh: serve it
        case Stale(entry): ...  # present but not fresh: refetch; serve only if the store is down
        case Miss(): ...        # nothing usable: fetch

Time is whatever clock the caller injects (seconds, monotonic); nothing here reads a clock.
`FeatureClient` (features/client.py) adds locking, single-flight fetches and generations.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached value (None: the store does not know the entity), when it was fetched, and
    the generation of the data it was fetched under."""

    value: Any
    fetched_at: float
    generation: int


# Hit and Stale are made per looked-up row: plain slotted classes, cheaper than frozen ones.
@dataclass(slots=True)
class Hit:
    """Fresh: same generation and younger than the TTL."""

    entry: Entry


@dataclass(slots=True)
class Stale:
    """Present but not fresh (expired, or fetched before a newer generation landed), and no
    older than the staleness limit: refetch, and serve it only while the store is down."""

    entry: Entry


@dataclass(frozen=True, slots=True)
class Miss:
    """Nothing usable: absent, or older than the staleness limit."""


MISS = Miss()
Decision = Hit | Stale | Miss


def decide(
    entry: Entry | None,
    now: float,
    ttl_s: float,
    generation: int,
    max_staleness_s: float = math.inf,
) -> Decision:
    """The whole caching policy. An entry is fresh while ``age < ttl_s`` and its generation is
    the current one; past that it is a stale fallback while ``age <= max_staleness_s``."""
    if entry is None:
        return MISS
    age = now - entry.fetched_at
    if age < 0.0:
        age = 0.0  # a clock that steps back must not make data younger than fetched
    if entry.generation == generation and age < ttl_s:
        return Hit(entry)
    if age <= max_staleness_s:
        return Stale(entry)
    return MISS


class LruCache(Generic[K]):
    """A map bounded at ``max_entries``; a hit moves its key to the young end, a put past the
    bound evicts the oldest-used keys. Not thread-safe: the caller holds a lock."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def peek(self, key: K) -> Entry | None:
        """The entry, without touching its recency."""
        return self._entries.get(key)

    def lookup(
        self,
        key: K,
        now: float,
        ttl_s: float,
        generation: int,
        max_staleness_s: float = math.inf,
    ) -> Decision:
        entry = self._entries.get(key)
        decision = decide(entry, now, ttl_s, generation, max_staleness_s)
        if isinstance(decision, Hit):
            self._entries.move_to_end(key)
        elif entry is not None and isinstance(decision, Miss):
            del self._entries[key]  # too old to ever serve: free the slot now
        return decision

    def put(self, key: K, entry: Entry) -> int:
        """Store ``entry``; returns how many entries were evicted to stay within the bound."""
        self._entries[key] = entry
        self._entries.move_to_end(key)
        evicted = 0
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            evicted += 1
        return evicted

    def invalidate(self, key: K) -> bool:
        """Drop one key; True if it was there."""
        return self._entries.pop(key, None) is not None

    def invalidate_where(self, predicate: Callable[[K], bool]) -> int:
        """Drop every key the predicate accepts (a full scan); returns how many."""
        doomed = [key for key in self._entries if predicate(key)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()
