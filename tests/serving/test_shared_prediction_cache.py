"""The prediction cache's shared tier end to end: replicas (real uvicorns on loopback) sharing
answers through a real Redis, each test under a key prefix of its own.

An answer one replica computed is a hit on another without a forward pass there; a new
feature generation is never answered from the old entries; a canary or shadow never reads
the champion's entries; and with Redis gone every request still answers 200, from the local
tier and the model, and the tier comes back when Redis does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import redis
import torch

from serving.config import (
    BatchingConfig,
    CachePolicy,
    ServerConfig,
    ServingPolicy,
    SharedCacheConfig,
)
from serving.manager import ModelManager
from serving.shared_cache import decode
from serving.spec import Deployment
from tests.serving.conftest import (
    DictLookup,
    Gate,
    Server,
    StaticLoader,
    StaticSource,
    make_model,
    spec_for,
)
from tests.serving.test_prediction_cache import CUSTOMERS, Hammer, expected, predict, rows_at
from tests.throwaway_redis import ThrowawayRedis
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

SHARED = ServingPolicy(cache=CachePolicy(ttl_s=600, max_entries=1000, shared=True))
TENSOR = [[0.5, 1.0, -0.25, 2.0, 0.0]]


@dataclass
class Replica:
    server: Server
    source: StaticSource
    manager: ModelManager
    gates: dict[int, Gate]  # each version's model here, counting its forward passes

    def rows(self, version: int) -> int:
        return self.gates[version].rows

    def metrics(self) -> str:
        with httpx.Client(base_url=self.server.url) as client:
            return client.get("/metrics").text


def replica(
    redis_url: str,
    prefix: str,
    lookup: DictLookup,
    deployment: Deployment,
    policy: ServingPolicy = SHARED,
    **config: Any,
) -> Replica:
    loader, gates = StaticLoader(), {}
    for version in (1, 2, 3):
        gates[version] = Gate(make_model(version))
        spec = replace(spec_for("churn", version, service="churn_features@1"), serving=policy)
        loader.add(spec, gates[version])
    source = StaticSource({"churn": deployment})
    server_config = ServerConfig(
        batching=BatchingConfig(8, 1.0),
        poll_s=0.02,
        shared_cache=SharedCacheConfig(redis_url, prefix=prefix, timeout_ms=200),
        **config,
    )
    manager = ModelManager(loader, source, server_config, lookup=lookup)
    return Replica(Server(manager), source, manager, gates)


def shared_entries(redis_url: str, prefix: str) -> dict[str, Any]:
    """Every answer under ``prefix``, by its key less the prefix."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(client.scan_iter(f"{prefix}*"))
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    return {k.decode()[len(prefix) :]: decode(v) for k, v in zip(keys, values, strict=True) if v}


def infer(client: httpx.Client, data: list[list[float]]) -> httpx.Response:
    tensor = {"name": "input", "shape": [len(data), 5], "datatype": "FP32", "data": data}
    body = {"inputs": [tensor]}
    return client.post("/v2/models/churn/infer", json=body)


def test_an_answer_computed_on_one_replica_is_a_hit_on_another(redis_url: str, prefix: str) -> None:
    lookup = DictLookup(rows_at(0))
    a = replica(redis_url, prefix, lookup, Deployment("churn", champion=1))
    b = replica(redis_url, prefix, lookup, Deployment("churn", champion=1))
    ids = [1, 2, 3]
    with a.server, b.server:
        with httpx.Client(base_url=a.server.url) as client:
            on_a = predict(client, ids)
            v2_on_a = infer(client, TENSOR)
        wait_until(lambda: len(shared_entries(redis_url, prefix)) == len(ids) + 1)
        rows_before = b.rows(1)
        with httpx.Client(base_url=b.server.url) as client:
            on_b = predict(client, ids)
            again_on_b = predict(client, ids)
            v2_on_b = infer(client, TENSOR)
        metrics = b.metrics()
    assert on_a.headers["x-prediction-cache"] == "miss"
    assert v2_on_a.headers["x-prediction-cache"] == "miss"
    assert on_b.status_code == 200
    assert on_b.headers["x-prediction-cache"] == "hit"
    assert on_b.json()["cached_rows"] == [0, 1, 2]
    assert on_b.json()["predictions"] == on_a.json()["predictions"]
    assert v2_on_b.headers["x-prediction-cache"] == "hit"
    assert v2_on_b.json()["outputs"] == v2_on_a.json()["outputs"]
    assert b.rows(1) == rows_before  # B never ran its model for them
    want = expected(1, rows_at(0))
    got = on_b.json()["predictions"]
    assert all(abs(p - want[i]) < 1e-5 for p, i in zip(got, ids, strict=True))
    # The tiers are told apart: B's first request missed locally and hit in Redis, its second
    # hit locally (the shared hits were kept there too).
    assert again_on_b.headers["x-prediction-cache"] == "hit"
    assert 'mlcp_serving_shared_cache_lookups_total{outcome="hit",ref="churn@1"} 4.0' in metrics
    assert 'mlcp_serving_cache_lookups_total{outcome="hit",ref="churn@1"} 3.0' in metrics
    assert 'mlcp_serving_cache_lookups_total{outcome="miss",ref="churn@1"} 4.0' in metrics
    assert "mlcp_serving_shared_cache_errors_total{" not in metrics
    # Keys name the version; the entity keys keep the generation (a digest), /v2's the tensor.
    keys = set(shared_entries(redis_url, prefix))
    assert {k.split(":")[0] for k in keys} == {"churn@1"}
    assert sorted(k.split(":")[1] for k in keys) == ["e", "e", "e", "t"]


def test_a_new_feature_generation_is_never_answered_from_the_old_entries(
    redis_url: str, prefix: str
) -> None:
    lookup = DictLookup(rows_at(0))
    a = replica(redis_url, prefix, lookup, Deployment("churn", champion=1))
    b = replica(redis_url, prefix, lookup, Deployment("churn", champion=1))
    everyone = list(range(CUSTOMERS))
    with a.server, b.server:
        with httpx.Client(base_url=a.server.url) as client:
            predict(client, everyone)
        wait_until(lambda: len(shared_entries(redis_url, prefix)) == CUSTOMERS)
        lookup.materialize(rows_at(1.5))  # both replicas read this store
        rows_before = b.rows(1)
        with httpx.Client(base_url=b.server.url) as client:
            on_b = predict(client, everyone)
        with httpx.Client(base_url=a.server.url) as client:
            on_a = predict(client, everyone)
    new = expected(1, rows_at(1.5))
    assert on_b.headers["x-prediction-cache"] == "miss"  # the old entries are another key
    assert b.rows(1) == rows_before + CUSTOMERS
    for body in (on_b.json(), on_a.json()):
        assert all(abs(p - new[i]) < 1e-5 for i, p in enumerate(body["predictions"]))
    assert on_a.headers["x-prediction-cache"] in ("hit", "partial", "miss")
    assert len(shared_entries(redis_url, prefix)) == 2 * CUSTOMERS  # both generations, apart


def test_canary_and_shadow_never_read_the_champions_shared_entries(
    redis_url: str, prefix: str
) -> None:
    lookup = DictLookup(rows_at(0))
    everyone = list(range(CUSTOMERS))
    a = replica(redis_url, prefix, lookup, Deployment("churn", champion=1))
    split = Deployment("churn", champion=1, challenger=2, canary_percent=50, shadow=3)
    b = replica(redis_url, prefix, lookup, split)
    with a.server, b.server:
        with httpx.Client(base_url=a.server.url) as client:
            predict(client, everyone)  # the champion's answer for everyone, in Redis
        wait_until(lambda: len(shared_entries(redis_url, prefix)) == CUSTOMERS)
        before = {v: b.rows(v) for v in (1, 2, 3)}
        mgets = count_mgets(b)
        with httpx.Client(base_url=b.server.url) as client:
            body = predict(client, everyone).json()
        wait_until(lambda: b.rows(3) == before[3] + CUSTOMERS, what="the shadow's copy")
    versions = body["versions"]
    assert set(versions) == {1, 2}  # the canary took its share
    on_champion = [i for i, v in enumerate(versions) if v == 1]
    on_canary = [i for i, v in enumerate(versions) if v == 2]
    assert body["cached_rows"] == on_champion  # only the champion's own entries were read
    assert b.rows(1) == before[1]
    assert b.rows(2) == before[2] + len(on_canary)  # the canary computed its own answers
    for i, (value, version) in enumerate(zip(body["predictions"], versions, strict=True)):
        assert abs(value - expected(version, rows_at(0))[i]) < 1e-5
    assert mgets == [1]  # one round trip for the whole request (champion, canary, shadow)
    entries = shared_entries(redis_url, prefix)
    by_version = {v: [k for k in entries if k.startswith(f"churn@{v}:")] for v in (1, 2, 3)}
    assert len(by_version[1]) == CUSTOMERS
    wait_until(lambda: len(shared_entries(redis_url, prefix)) == 2 * CUSTOMERS + len(on_canary))


def count_mgets(rep: Replica) -> list[int]:
    """Counts the replica's MGETs to Redis from now on (in a one-item list)."""
    shared = rep.manager.shared_cache
    assert shared is not None
    client = shared._redis
    calls = [0]
    original = client.mget

    async def mget(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)

    client.mget = mget  # type: ignore[method-assign]
    return calls


def test_a_swap_while_redis_answers_routes_the_request_again(redis_url: str, prefix: str) -> None:
    lookup = DictLookup(rows_at(0))
    rep = replica(redis_url, prefix, lookup, Deployment("churn", champion=1), keep_warm_s=0.0)
    with rep.server:
        shared = rep.manager.shared_cache
        assert shared is not None
        original = shared.get_many

        async def swap_meanwhile(wanted: Any) -> Any:
            found = await original(wanted)
            if rep.manager.deployments["churn"].champion == 1:
                rep.source.set(Deployment("churn", champion=2, revision=1))
                await rep.manager.apply(rep.source.read())  # version 1 drains: takes nothing
            return found

        shared.get_many = swap_meanwhile  # type: ignore[method-assign]
        with httpx.Client(base_url=rep.server.url) as client:
            entity = predict(client, [1, 2])
            rep.source.set(Deployment("churn", champion=1, revision=2))
            wait_until(lambda: rep.manager.deployments["churn"].champion == 1)
            tensor = infer(client, TENSOR)
    assert entity.status_code == 200, entity.text
    assert entity.json()["versions"] == [2, 2]
    want = expected(2, rows_at(0))
    got = entity.json()["predictions"]
    assert all(abs(p - want[i]) < 1e-5 for p, i in zip(got, [1, 2], strict=True))
    assert tensor.status_code == 200, tensor.text
    assert tensor.json()["model_version"] == "2"
    x = torch.tensor(TENSOR)
    assert abs(tensor.json()["outputs"][0]["data"][0] - make_model(2)(x).item()) < 1e-5


def test_no_shared_answer_outlives_a_version_swap(redis_url: str, prefix: str) -> None:
    lookup = DictLookup(rows_at(0))
    rep = replica(redis_url, prefix, lookup, Deployment("churn", champion=1), keep_warm_s=0.0)
    with rep.server, Hammer(rep.server.url) as hammer:
        hammer.wait_for(200, since=0)  # Redis and the local tier hold version 1's answers
        rep.source.set(Deployment("churn", champion=2, revision=1))
        wait_until(lambda: rep.server.call(lambda: rep.manager.deployments["churn"].champion) == 2)
        swapped = time.monotonic()
        hammer.wait_for(200, since=swapped)
    assert not hammer.failures, hammer.failures[:3]  # the swap failed nothing (no 503)
    after = hammer.after(swapped)
    want = expected(2, rows_at(0))
    assert all(version == 2 and abs(value - want[i]) < 1e-5 for _, i, value, version, _ in after)
    assert any(hit for *_, hit in after)


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_with_redis_gone_every_request_still_answers_from_the_local_tier_and_the_model(
    throwaway_redis: ThrowawayRedis,
) -> None:
    url, prefix = throwaway_redis.url, "mlcp:pred:"
    lookup = DictLookup(rows_at(0))
    # Two local entries: most lookups miss locally and go to Redis (then fail, or are skipped).
    tiny = ServingPolicy(cache=CachePolicy(ttl_s=600, max_entries=2, shared=True))
    a = replica(url, prefix, lookup, Deployment("churn", champion=1), tiny)
    b = replica(url, prefix, lookup, Deployment("churn", champion=1), tiny)
    want = expected(1, rows_at(0))
    with a.server, b.server, Hammer(b.server.url) as hammer:
        hammer.wait_for(100, since=0)
        throwaway_redis.stop()
        stopped = time.monotonic()
        hammer.wait_for(200, since=stopped)
        with httpx.Client(base_url=b.server.url, timeout=30) as client:
            took = []
            for n in range(20):  # new tensors: local misses, so Redis is asked (or skipped)
                start = time.perf_counter()
                r = infer(client, [[float(n), 1.0, 2.0, 3.0, 4.0]])
                took.append(time.perf_counter() - start)
                assert r.status_code == 200, r.text
        throwaway_redis.start()  # back, empty: the tier works again after the cooldown

        def shared_again() -> bool:
            data = [[time.monotonic() % 1000, 0.0, 1.0, 0.0, 1.0]]
            with httpx.Client(base_url=a.server.url) as ca:
                infer(ca, data)
            with httpx.Client(base_url=b.server.url) as cb:
                answer = infer(cb, data)
            return answer.headers["x-prediction-cache"] == "hit"

        wait_until(shared_again, timeout_s=30, what="the shared tier to work again")
        metrics = b.metrics()
    assert not hammer.failures, hammer.failures[:3]
    after = hammer.after(stopped)
    assert len(after) >= 200
    assert all(abs(value - want[i]) < 1e-5 for _, i, value, _, _ in after)
    assert max(took) < 1.0, took  # nobody waits on the dead Redis (the timeout is 200 ms)
    assert 'mlcp_serving_shared_cache_errors_total{op="get"}' in metrics
    assert 'mlcp_serving_shared_cache_lookups_total{outcome="error",ref="churn@1"}' in metrics
    assert 'mlcp_serving_shared_cache_lookups_total{outcome="skipped",ref="churn@1"}' in metrics


def test_a_replica_without_redis_keeps_shared_caches_local_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loader = StaticLoader()
    for version in (1, 3):
        spec = replace(spec_for("churn", version, service="churn_features@1"), serving=SHARED)
        loader.add(spec, make_model(version))
    source = StaticSource({"churn": Deployment("churn", champion=1, shadow=3)})
    config = ServerConfig(batching=BatchingConfig(8, 1.0), poll_s=0.02)
    manager = ModelManager(loader, source, config, lookup=DictLookup(rows_at(0)))
    server = Server(manager)
    with (
        caplog.at_level("WARNING", logger="serving.manager"),
        server,
        httpx.Client(base_url=server.url) as client,
    ):
        answers = [predict(client, [1, 2]) for _ in range(2)]
    said = [r for r in caplog.records if "has no Redis" in r.getMessage()]
    assert len(said) == 1  # two shared versions loaded, one line
    assert "--cache-redis-url" in said[0].getMessage()
    assert [r.headers["x-prediction-cache"] for r in answers] == ["miss", "hit"]  # local tier
