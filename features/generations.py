"""Materialization generations: a counter per Feast feature view, bumped when new data lands.

Whoever materializes a view bumps its generation after the write; every `FeatureClient`
reading that view sees the new number within ``CacheConfig.generation_check_s`` and stops
serving what it cached before. A view never bumped is at generation 0.

    gens = RedisGenerations("redis://127.0.0.1:6379")   # shared by every process
    gens.bump("user_stats__v2")                          # after materializing user_stats@2
    gens.current(["user_stats__v2"])                     # {"user_stats__v2": 1}

`MemoryGenerations` is the single-process one (tests, embedded demos).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from features.client import BackendUnavailable


class GenerationSource(Protocol):
    """Where a view's materialization generation is read and bumped."""

    def current(self, views: Sequence[str]) -> dict[str, int]:
        """The generation of each view (0 for one never bumped)."""
        ...

    def bump(self, view: str) -> int:
        """Record that new data for ``view`` landed; returns the new generation."""
        ...


class MemoryGenerations:
    """Generations held in this process. ``MemoryGenerations().bump("v") == 1``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}

    def current(self, views: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {view: self._generations.get(view, 0) for view in views}

    def bump(self, view: str) -> int:
        with self._lock:
            self._generations[view] = self._generations.get(view, 0) + 1
            return self._generations[view]


class RedisGenerations:
    """Generations in Redis, one integer key per view (``{namespace}:gen:{view}``): INCR to bump,
    one MGET to read, so processes and machines sharing the Redis agree.

    ``RedisGenerations("redis://127.0.0.1:6379", namespace="mlcp")``. Connection failures
    raise `BackendUnavailable` quickly (no client-side retry backoff): a reader checks often
    and keeps its last known generations meanwhile.
    """

    def __init__(self, url: str, namespace: str = "mlcp", *, timeout_s: float = 1.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.namespace = namespace
        self._redis: Any = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )

    def key(self, view: str) -> str:
        return f"{self.namespace}:gen:{view}"

    def current(self, views: Sequence[str]) -> dict[str, int]:
        if not views:
            return {}
        with _unavailable(f"generations at {self.url}: read"):
            raw = self._redis.mget([self.key(view) for view in views])
        return {
            view: int(value) if value is not None else 0
            for view, value in zip(views, raw, strict=True)
        }

    def bump(self, view: str) -> int:
        with _unavailable(f"generations at {self.url}: bump {view!r}"):
            return int(self._redis.incr(self.key(view)))

    def close(self) -> None:
        self._redis.close()


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """Redis' connection errors become `BackendUnavailable` at this edge."""
    import redis

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise BackendUnavailable(f"{what}: {exc}") from exc
