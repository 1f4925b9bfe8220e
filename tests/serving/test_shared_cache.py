"""The shared tier's keys and values, and `SharedCache` against a real Redis (its keys under a
prefix of their own), a port nobody listens on, and a server that never answers."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis
import torch

from serving.cache import entity_key, tensor_key
from serving.config import SharedCacheConfig
from serving.shared_cache import SharedCache, decode, encode, shared_key
from tests.serving.conftest import free_port


class Counts:
    """`SharedCacheMetrics` as plain counters."""

    def __init__(self) -> None:
        self.lookups: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}

    def shared_cache_lookups(self, ref: str, outcome: str, count: int) -> None:
        self.lookups[(ref, outcome)] = self.lookups.get((ref, outcome), 0) + count

    def shared_cache_error(self, op: str) -> None:
        self.errors[op] = self.errors.get(op, 0) + 1


def test_keys_name_the_version_and_keep_the_generation() -> None:
    key = entity_key((3,), {"customer_id": 7})
    assert shared_key("mlcp:pred:", "churn@3", key).startswith("mlcp:pred:churn@3:e:")
    assert shared_key("p:", "churn@3", key) != shared_key("p:", "churn@4", key)
    assert shared_key("p:", "churn@3", key) != shared_key(
        "p:", "churn@3", entity_key((4,), {"customer_id": 7})
    )
    # One row, as in the local tier: 7 and 7.0 are one key, True and 1 are not.
    assert shared_key("p:", "m@1", entity_key((1,), {"id": 7})) == shared_key(
        "p:", "m@1", entity_key((1,), {"id": 7.0})
    )
    assert shared_key("p:", "m@1", entity_key((1,), {"id": True})) != shared_key(
        "p:", "m@1", entity_key((1,), {"id": 1})
    )
    digest = tensor_key(torch.ones(2, 3))
    assert shared_key("p:", "m@1", digest) == f"p:m@1:t:{digest.hex()}"


def test_values_are_json_and_come_back_the_same() -> None:
    outputs = torch.tensor([[0.1, 2.5], [-3.0, 1e-7]], dtype=torch.float32)
    raw = encode(outputs)
    assert raw.startswith(b'{"tensor":{"dtype":"float32","shape":[2,2]')
    back = decode(raw)
    assert back.dtype == torch.float32
    assert torch.equal(back, outputs)
    assert decode(encode(0.83)) == 0.83
    assert decode(encode([0.1, 0.9])) == [0.1, 0.9]
    with pytest.raises(ValueError, match="unknown dtype"):
        decode(b'{"tensor":{"dtype":"Tensor","shape":[1],"data":[1]}}')


def test_answers_go_round_trip_through_redis_with_their_ttl(redis_url: str, prefix: str) -> None:
    counts = Counts()
    config = SharedCacheConfig(redis_url, prefix=prefix)
    key = entity_key((1,), {"customer_id": 7})

    async def run() -> tuple[list[object], list[object]]:
        shared = SharedCache(config, counts)
        before = await shared.get_many([("churn@1", key)])
        shared.put_many("churn@1", 30.0, [(key, 0.83)])
        await shared.flush()
        after = await shared.get_many([("churn@1", key), ("churn@2", key)])
        await shared.aclose()
        return before, after

    before, after = asyncio.run(run())
    assert before == [None]
    assert after == [0.83, None]  # churn@2 never reads churn@1's answer
    client = redis.Redis.from_url(redis_url)
    ttl_ms = client.pttl(shared_key(prefix, "churn@1", key))
    client.close()
    assert 25_000 < ttl_ms <= 30_000
    assert counts.lookups == {("churn@1", "miss"): 1, ("churn@1", "hit"): 1, ("churn@2", "miss"): 1}
    assert counts.errors == {}


def test_a_foreign_value_under_a_key_is_a_miss(redis_url: str, prefix: str) -> None:
    key = entity_key((1,), {"customer_id": 8})
    client = redis.Redis.from_url(redis_url)
    client.set(shared_key(prefix, "churn@1", key), b"\x80\x04pickle?", ex=30)
    client.close()

    async def run() -> list[object]:
        shared = SharedCache(SharedCacheConfig(redis_url, prefix=prefix))
        try:
            return await shared.get_many([("churn@1", key)])
        finally:
            await shared.aclose()

    assert asyncio.run(run()) == [None]


def test_a_redis_that_refuses_is_a_miss_and_then_skipped_for_the_cooldown() -> None:
    counts = Counts()
    config = SharedCacheConfig(f"redis://127.0.0.1:{free_port()}", cooldown_s=5.0)
    now = [0.0]
    key = entity_key((1,), {"customer_id": 7})

    async def run() -> list[list[object]]:
        shared = SharedCache(config, counts, clock=lambda: now[0])
        first = await shared.get_many([("m@1", key)])
        shared.put_many("m@1", 30.0, [(key, 1.0)])  # not even tried while it is open
        second = await shared.get_many([("m@1", key)])
        now[0] += 5.0
        third = await shared.get_many([("m@1", key)])  # the trial, which fails again
        await shared.aclose()
        return [first, second, third]

    assert asyncio.run(run()) == [[None]] * 3
    assert counts.lookups == {("m@1", "error"): 2, ("m@1", "skipped"): 1}
    assert counts.errors == {"get": 2}


def test_a_redis_that_never_answers_costs_a_request_at_most_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        config = SharedCacheConfig(f"redis://127.0.0.1:{port}", timeout_ms=30.0)
        counts = Counts()

        async def run() -> tuple[list[object], float]:
            shared = SharedCache(config, counts)
            start = time.perf_counter()
            found = await shared.get_many([("m@1", b"digest")])
            took = time.perf_counter() - start
            await shared.aclose()
            return found, took

        found, took = asyncio.run(run())
    assert found == [None]
    assert took < 0.5  # the 30 ms timeout, with room for a busy machine; never Redis's 5 s
    assert counts.lookups == {("m@1", "error"): 1}
