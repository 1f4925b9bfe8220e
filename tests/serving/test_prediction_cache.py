"""The prediction cache end to end (a real uvicorn on loopback): answers say when they came
from the cache, and no cached answer outlives its version or its features.

The swap and re-materialization tests send requests from several threads while the event
happens; every request sent after the event is over must get the new answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
import pytest
import torch

from serving.config import BatchingConfig, CachePolicy, ServerConfig, ServingPolicy
from serving.manager import ModelManager
from serving.spec import Deployment
from tests.serving.conftest import (
    FEATURES,
    DictLookup,
    Server,
    StaticLoader,
    StaticSource,
    make_model,
    spec_for,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

CUSTOMERS = 12
POLICY = ServingPolicy(cache=CachePolicy(ttl_s=600, max_entries=1000))


def rows_at(shift: float) -> dict[int, dict[str, float]]:
    return {
        i: {name: float(i % 5) + j / 10 + shift for j, name in enumerate(FEATURES)}
        for i in range(CUSTOMERS)
    }


def expected(version: int, rows: dict[int, dict[str, float]]) -> dict[int, float]:
    x = torch.tensor([[rows[i][n] for n in FEATURES] for i in range(CUSTOMERS)])
    out = make_model(version)(x).detach().reshape(-1).tolist()
    return dict(enumerate(out))


@pytest.fixture
def cached_loader() -> StaticLoader:
    loader = StaticLoader()
    for version in (1, 2, 3):
        spec = replace(spec_for("churn", version, service="churn_features@1"), serving=POLICY)
        loader.add(spec, make_model(version))
    return loader


def serve(
    loader: StaticLoader, lookup: DictLookup, *deployments: Deployment
) -> tuple[Server, StaticSource, ModelManager]:
    source = StaticSource({d.name: d for d in deployments})
    config = ServerConfig(batching=BatchingConfig(8, 1.0), poll_s=0.02, device_hour_price=3.6)
    manager = ModelManager(loader, source, config, lookup=lookup)
    return Server(manager), source, manager


def predict(client: httpx.Client, ids: list[int]) -> httpx.Response:
    body = {"entities": [{"customer_id": i} for i in ids]}
    return client.post("/v1/models/churn/predict", json=body)


def test_answers_say_when_they_came_from_the_cache(cached_loader: StaticLoader) -> None:
    server, _, _ = serve(cached_loader, DictLookup(rows_at(0)), Deployment("churn", champion=1))
    x = [[0.5] * 5]
    tensor = {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": x}]}
    with server, httpx.Client(base_url=server.url) as client:
        first = predict(client, [1, 2])
        second = predict(client, [2, 3])
        infer = [client.post("/v2/models/churn/infer", json=tensor) for _ in range(2)]
        metrics = client.get("/metrics").text
    assert first.headers["x-prediction-cache"] == "miss"
    assert first.json()["cached_rows"] == []
    assert second.headers["x-prediction-cache"] == "partial"
    assert second.json()["cached_rows"] == [0]
    assert second.json()["predictions"][0] == first.json()["predictions"][1]
    assert [r.headers["x-prediction-cache"] for r in infer] == ["miss", "hit"]
    assert infer[0].json()["outputs"] == infer[1].json()["outputs"]
    assert 'mlcp_serving_cache_lookups_total{outcome="hit",ref="churn@1"} 2.0' in metrics
    assert 'mlcp_serving_cache_lookups_total{outcome="miss",ref="churn@1"} 4.0' in metrics
    # Cached answers count as predictions that took no device time: they lower the cost.
    assert 'mlcp_serving_predictions_total{ref="churn@1"} 6.0' in metrics
    assert 'mlcp_serving_cost_per_1k_predictions{ref="churn@1"}' in metrics


def test_without_a_cache_policy_nothing_is_cached(loader: StaticLoader) -> None:
    server, _, _ = serve(loader, DictLookup(rows_at(0)), Deployment("churn", champion=1))
    with server, httpx.Client(base_url=server.url) as client:
        answers = [predict(client, [1]) for _ in range(2)]
    assert all("x-prediction-cache" not in r.headers for r in answers)
    assert all("cached_rows" not in r.json() for r in answers)


class Hammer:
    """Threads sending entity requests for every customer until stopped; each answer is kept
    with the time its request was sent."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.stop = url, threading.Event()
        self.seen: list[tuple[float, int, float, int, bool]] = []  # sent, id, value, version, hit
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(threads)]

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = offset
            while not self.stop.is_set():
                ids = [n % CUSTOMERS, (n + 5) % CUSTOMERS]
                n += 1
                sent = time.monotonic()
                r = predict(client, ids)
                if r.status_code != 200:
                    with self._lock:
                        self.failures.append(f"{r.status_code} {r.text}")
                    continue
                body = r.json()
                with self._lock:
                    for j, i in enumerate(ids):
                        hit = j in body["cached_rows"]
                        self.seen.append(
                            (sent, i, body["predictions"][j], body["versions"][j], hit)
                        )

    def after(self, t: float) -> list[tuple[float, int, float, int, bool]]:
        with self._lock:
            return [s for s in self.seen if s[0] > t]

    def wait_for(self, count: int, since: float) -> None:
        wait_until(lambda: len(self.after(since)) >= count, timeout_s=60)


def assert_all_match(
    answers: list[tuple[float, int, float, int, bool]], version: int, want: dict[int, float]
) -> None:
    wrong = [
        (i, value, got_version)
        for _, i, value, got_version, _ in answers
        if got_version != version or abs(value - want[i]) > 1e-5
    ]
    assert not wrong, f"{len(wrong)} stale answers, e.g. {wrong[:3]}"


def test_no_cached_answer_outlives_a_version_swap(cached_loader: StaticLoader) -> None:
    rows = rows_at(0)
    server, source, manager = serve(
        cached_loader, DictLookup(rows), Deployment("churn", champion=1)
    )
    with server, Hammer(server.url) as hammer:
        hammer.wait_for(200, since=0)  # the cache is warm with version 1's answers
        source.set(Deployment("churn", champion=2, revision=1))
        wait_until(lambda: server.call(lambda: manager.deployments["churn"].champion) == 2)
        swapped = time.monotonic()
        hammer.wait_for(200, since=swapped)
    assert not hammer.failures, hammer.failures[:3]
    before = [s for s in hammer.seen if s[0] <= swapped]
    assert_all_match([s for s in before if s[3] == 1], 1, expected(1, rows))
    after = hammer.after(swapped)
    assert_all_match(after, 2, expected(2, rows))
    assert any(s[4] for s in before)  # the cache was in use
    assert any(s[4] for s in after)


def test_no_cached_answer_outlives_a_rematerialization(cached_loader: StaticLoader) -> None:
    lookup = DictLookup(rows_at(0))
    server, _, _ = serve(cached_loader, lookup, Deployment("churn", champion=1))
    with server, Hammer(server.url) as hammer:
        hammer.wait_for(200, since=0)
        lookup.materialize(rows_at(1.5))
        landed = time.monotonic()
        hammer.wait_for(200, since=landed)
    assert not hammer.failures, hammer.failures[:3]
    old, new = expected(1, rows_at(0)), expected(1, rows_at(1.5))
    before = [s for s in hammer.seen if s[0] <= landed]
    assert all(abs(s[2] - old[s[1]]) < 1e-5 or abs(s[2] - new[s[1]]) < 1e-5 for s in before)
    after = hammer.after(landed)
    assert_all_match(after, 1, new)
    assert any(s[4] for s in after)  # the new generation's answers are cached in turn


def test_canary_and_shadow_answers_never_land_in_the_champions_entries(
    cached_loader: StaticLoader,
) -> None:
    rows = rows_at(0)
    deployment = Deployment("churn", champion=1, challenger=2, canary_percent=50, shadow=3)
    server, _, manager = serve(cached_loader, DictLookup(rows), deployment)
    with server, httpx.Client(base_url=server.url) as client:
        answers = [predict(client, list(range(CUSTOMERS))).json() for _ in range(3)]

        def entries() -> dict[int, dict[int, float]]:
            out = {}
            for (_, version), served in manager.live.items():
                assert served.cache is not None
                out[version] = {
                    dict((k, v) for k, _, v in key[1])["customer_id"]: value
                    for key, value in served.cache.peek().items()
                }
            return out

        wait_until(lambda: len(server.call(entries)[3]) == CUSTOMERS)  # the shadow answered
        cached = server.call(entries)
    versions = answers[0]["versions"]
    assert set(versions) == {1, 2}  # the canary took its share
    assert answers[2]["cached_rows"] == list(range(CUSTOMERS))
    for version in (1, 2, 3):
        want = expected(version, rows)
        assert cached[version], f"version {version} kept nothing"
        assert all(abs(v - want[i]) < 1e-5 for i, v in cached[version].items())
    # Each entity is cached only by the version it routes to (and the shadow): never both.
    assert set(cached[1]).isdisjoint(cached[2])
    assert set(cached[1]) == {i for i, v in enumerate(versions) if v == 1}
    for body in answers:
        for i, (value, version) in enumerate(
            zip(body["predictions"], body["versions"], strict=True)
        ):
            assert abs(value - expected(version, rows)[i]) < 1e-5
