"""The prediction cache's shared tier: answers kept in Redis, so every replica can use them.

    shared = SharedCache(SharedCacheConfig("redis://cache:6379/0"), metrics)
    values = await shared.get_many([("churn@3", key), ...])  # one MGET; None for each miss
    shared.put_many("churn@3", 60.0, [(key, 0.83)])           # pipelined SET EX, not awaited
    await shared.aclose()

A version's local `PredictionCache` is the first tier; this one is asked only for what the
local tier missed. Keys name the version (``mlcp:pred:churn@3:e:<digest>``): Redis is shared
by every version and replica, so an answer read under a version's key is that version's own.
Entity keys keep the features' generation (the local key's), /v2 keys are the tensor digest.
Values are JSON (a tensor as dtype, shape and numbers), never pickle: whatever is in Redis
is only ever decoded as data.

Redis must never fail or stall a request: every call is bounded by ``timeout_ms``, any
error is a miss, and after one the breaker skips Redis for ``cooldown_s`` (one trial call
then). Writes go out in the background, at most ``max_pending_writes`` at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import torch

from serving.breaker import Breaker
from serving.config import SharedCacheConfig

log = logging.getLogger(__name__)

Wanted = tuple[str, Hashable]  # (version ref, local cache key)
SHARED_OUTCOMES = ("hit", "miss", "error", "skipped")


class SharedCacheMetrics(Protocol):
    """What the shared tier reports; `serving.metrics.ServingMetrics` implements it."""

    def shared_cache_lookups(self, ref: str, outcome: str, count: int) -> None: ...

    def shared_cache_error(self, op: str) -> None: ...


def shared_key(prefix: str, ref: str, key: Hashable) -> str:
    """The Redis key of a local cache key: the version's ref and a digest of the key."""
    if isinstance(key, bytes):  # a tensor digest (`serving.cache.tensor_key`)
        return f"{prefix}{ref}:t:{key.hex()}"
    text = json.dumps(_canonical(key), separators=(",", ":"))
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return f"{prefix}{ref}:e:{digest}"


def _canonical(value: Any) -> Any:
    """A JSON form in which equal local keys are equal: ``1`` and ``1.0`` name one row, as
    they do in a Python tuple (``True`` and ``1`` differ: `entity_key` marks booleans)."""
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return f"{type(value).__name__}:{value!r}"


def encode(value: Any) -> bytes:
    """An answer as JSON: a tensor as its dtype, shape and values; anything else as itself."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu()
        body = {"dtype": str(data.dtype).removeprefix("torch."), "shape": list(data.shape)}
        body["data"] = data.reshape(-1).tolist()
        return json.dumps({"tensor": body}, separators=(",", ":")).encode()
    return json.dumps({"value": value}, separators=(",", ":")).encode()


def decode(raw: bytes | str) -> Any:
    """What `encode` wrote; ValueError for anything else (a foreign or damaged entry)."""
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("not a cached answer")
    if "value" in body:
        return body["value"]
    tensor = body["tensor"]
    dtype = getattr(torch, str(tensor["dtype"]), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {tensor['dtype']!r}")
    return torch.tensor(tensor["data"], dtype=dtype).reshape(tensor["shape"])


class SharedCache:
    """A replica's connection to the shared tier (one client, one breaker, for all versions)."""

    def __init__(
        self,
        config: SharedCacheConfig,
        metrics: SharedCacheMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Imported here: a replica without a shared cache never loads redis-py.
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.config, self._metrics = config, metrics
        timeout_s = config.timeout_ms / 1000
        self.timeout_s = timeout_s
        # No retries: a retry would only double how long a request waits on a sick Redis.
        self._redis = aioredis.Redis.from_url(
            config.url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.breaker = Breaker(config.cooldown_s, clock)
        self._writes: set[asyncio.Task[None]] = set()
        self.errors = 0

    async def get_many(self, wanted: list[Wanted]) -> list[Any]:
        """Each wanted answer, or None (not there, Redis down or skipped): one MGET."""
        misses: list[Any] = [None] * len(wanted)
        if not wanted:
            return misses
        if not self.breaker.allows():
            self._count(wanted, [], "skipped")
            return misses
        keys = [shared_key(self.config.prefix, ref, key) for ref, key in wanted]
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self._redis.mget(keys)
        except Exception as exc:  # whatever Redis does, the request goes on without it
            self._failed("get", exc)
            self._count(wanted, [], "error")
            return misses
        self._succeeded()
        values = [self._decoded(r) for r in raw]
        self._count(wanted, values, "")
        return values

    def put_many(self, ref: str, ttl_s: float, items: list[tuple[Hashable, Any]]) -> None:
        """Share these answers (``ttl_s`` seconds each) in the background: one pipeline."""
        if not items or not self.breaker.closed:
            return
        if len(self._writes) >= self.config.max_pending_writes:
            return  # Redis is slow: keep the answers local rather than pile writes up
        ttl_ms = max(1, int(ttl_s * 1000))
        entries = [(shared_key(self.config.prefix, ref, k), encode(v)) for k, v in items]
        task = asyncio.get_running_loop().create_task(self._write(entries, ttl_ms))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, entries: list[tuple[str, bytes]], ttl_ms: int) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                pipe = self._redis.pipeline(transaction=False)
                for key, raw in entries:
                    pipe.set(key, raw, px=ttl_ms)
                await pipe.execute()
        except Exception as exc:  # whatever Redis does, the request goes on without it
            self._failed("set", exc)

    async def flush(self) -> None:
        """Wait for the writes in flight (tests; and before closing)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
        await self._redis.aclose()

    def _decoded(self, raw: bytes | str | None) -> Any:
        if raw is None:
            return None
        try:
            return decode(raw)
        except (ValueError, KeyError, TypeError, RuntimeError):
            return None  # not ours, or damaged: a miss, and the model's answer replaces it

    def _count(self, wanted: list[Wanted], values: list[Any], outcome: str) -> None:
        if self._metrics is None:
            return
        counts: dict[tuple[str, str], int] = {}
        for i, (ref, _) in enumerate(wanted):
            got = outcome or ("hit" if values[i] is not None else "miss")
            counts[(ref, got)] = counts.get((ref, got), 0) + 1
        for (ref, got), count in counts.items():
            self._metrics.shared_cache_lookups(ref, got, count)

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        if self._metrics is not None:
            self._metrics.shared_cache_error(op)
        if self.breaker.failed():
            log.warning(
                "the shared prediction cache failed (%s: %s); answering from the local tier "
                "and the model, trying Redis again every %.0f s",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "timed out",
                self.config.cooldown_s,
            )

    def _succeeded(self) -> None:
        if self.breaker.succeeded():
            log.warning("the shared prediction cache works again")
