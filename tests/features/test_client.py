from __future__ import annotations

import math
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from features.client import (
    BackendUnavailable,
    CacheConfig,
    FeatureClient,
    entity_key,
    ttl_for,
)
from features.errors import FeatureNotFound, OnlineStoreUnavailable
from features.generations import MemoryGenerations, RedisGenerations
from features.metrics import FeatureMetrics
from features.refs import VersionedRef

ROOT = Path(__file__).resolve().parents[2]
SVC = "churn@1"
REF = VersionedRef("churn", 1)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeBackend:
    """user_id -> values; records every read; can be 'down'."""

    def __init__(
        self,
        data: dict[int, dict[str, Any]] | None = None,
        views: tuple[str, ...] = ("user_stats__v1",),
        freshness_s: float | None = None,
    ) -> None:
        self.data = dict(data or {})
        self._views = list(views)
        self._freshness_s = freshness_s
        self.calls: list[list[int]] = []
        self.down = False
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def read(self, service: VersionedRef, entity_rows: list[dict[str, Any]]) -> list[Any]:
        with self.lock:
            self.calls.append([row["user_id"] for row in entity_rows])
        if self.error is not None:
            raise self.error
        if self.down:
            raise BackendUnavailable("fake store is down")
        return [
            dict(self.data[row["user_id"]]) if row["user_id"] in self.data else None
            for row in entity_rows
        ]

    def views(self, service: VersionedRef) -> list[str]:
        if service.name == "nope":
            raise FeatureNotFound(str(service))
        return self._views

    def freshness_s(self, service: VersionedRef) -> float | None:
        return self._freshness_s


def users(*ids: int) -> list[dict[str, Any]]:
    return [{"user_id": i} for i in ids]


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll a condition another thread makes true, failing past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.001)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend({i: {"orders": i, "spend": i * 1.5} for i in range(1, 101)})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def gens() -> MemoryGenerations:
    return MemoryGenerations()


@pytest.fixture
def make_client(
    backend: FakeBackend, gens: MemoryGenerations, clock: FakeClock, registry: CollectorRegistry
) -> Callable[..., FeatureClient]:
    def make(**config: Any) -> FeatureClient:
        return FeatureClient(
            backend, gens, CacheConfig(**config), clock=clock, metrics=FeatureMetrics(registry)
        )

    return make


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# -- hits, misses, batches ---------------------------------------------------------------------
def test_first_get_fetches_then_hits(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client()
    first = client.get(SVC, users(7))
    assert first.rows[0].values == {"orders": 7, "spend": 10.5}
    assert first.rows[0].status == "fetched"
    assert first.rows[0].age_s == 0.0
    clock.advance(5)
    second = client.get(SVC, users(7))
    assert second.rows[0].values == {"orders": 7, "spend": 10.5}
    assert second.rows[0].status == "hit"
    assert second.rows[0].age_s == 5.0
    assert backend.calls == [[7]]


def test_only_missing_keys_go_to_the_backend_in_one_call(
    make_client: Callable[..., FeatureClient], backend: FakeBackend
) -> None:
    client = make_client()
    client.get(SVC, users(1, 2))
    batch = client.get(SVC, users(3, 1, 4, 2, 5))
    assert backend.calls == [[1, 2], [3, 4, 5]]
    assert [row.status for row in batch.rows] == ["fetched", "hit", "fetched", "hit", "fetched"]
    assert [row.values["orders"] for row in batch.rows if row.values] == [3, 1, 4, 2, 5]


def test_a_key_repeated_in_a_batch_is_fetched_once(
    make_client: Callable[..., FeatureClient], backend: FakeBackend
) -> None:
    batch = make_client().get(SVC, users(3, 3, 4, 3))
    assert backend.calls == [[3, 4]]
    assert batch.values == [{"orders": n, "spend": n * 1.5} for n in (3, 3, 4, 3)]


def test_an_empty_batch_reads_nothing(
    make_client: Callable[..., FeatureClient], backend: FakeBackend
) -> None:
    assert len(make_client().get(SVC, [])) == 0
    assert backend.calls == []


def test_served_values_are_copies_callers_may_mutate(
    make_client: Callable[..., FeatureClient],
) -> None:
    client = make_client()
    values = client.get(SVC, users(1)).rows[0].values
    assert values is not None
    values["orders"] = -1
    assert client.get(SVC, users(1)).rows[0].values == {"orders": 1, "spend": 1.5}


def test_entity_key_is_independent_of_column_order() -> None:
    assert entity_key({"a": 1, "b": "x"}) == entity_key({"b": "x", "a": 1})
    with pytest.raises(ValueError, match="scalars"):
        entity_key({"a": [1, 2]})


def test_service_given_as_text_or_ref_shares_entries(
    make_client: Callable[..., FeatureClient], backend: FakeBackend
) -> None:
    client = make_client()
    client.get(SVC, users(1))
    assert client.get(REF, users(1)).rows[0].status == "hit"
    assert client.get("churn@2", users(1)).rows[0].status == "fetched"  # another version
    assert len(backend.calls) == 2


def test_unknown_service_is_feature_not_found(make_client: Callable[..., FeatureClient]) -> None:
    with pytest.raises(FeatureNotFound, match="nope@1"):
        make_client().get("nope@1", users(1))


# -- TTL and negative caching ------------------------------------------------------------------
def test_ttl_is_capped_by_the_data_freshness(
    backend: FakeBackend, gens: MemoryGenerations, clock: FakeClock
) -> None:
    backend._freshness_s = 10
    client = FeatureClient(backend, gens, CacheConfig(default_ttl_s=60), clock=clock)
    client.get(SVC, users(1))
    clock.advance(9.9)
    assert client.get(SVC, users(1)).rows[0].status == "hit"
    clock.advance(0.1)
    assert client.get(SVC, users(1)).rows[0].status == "fetched"
    assert ttl_for(CacheConfig(default_ttl_s=60), None) == 60
    assert ttl_for(CacheConfig(default_ttl_s=60), 600) == 60
    assert ttl_for(CacheConfig(default_ttl_s=60), 10) == 10


def test_default_ttl_applies_without_freshness(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client(default_ttl_s=30)
    client.get(SVC, users(1))
    clock.advance(29.9)
    assert client.get(SVC, users(1)).rows[0].status == "hit"
    clock.advance(0.1)
    assert client.get(SVC, users(1)).rows[0].status == "fetched"


def test_unknown_entities_are_missing_and_cached_with_the_same_ttl(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client(default_ttl_s=30)
    row = client.get(SVC, users(999)).rows[0]
    assert row.values is None
    assert row.status == "missing"
    for _ in range(5):
        assert client.get(SVC, users(999)).rows[0].status == "missing"
    assert backend.calls == [[999]]
    backend.data[999] = {"orders": 1, "spend": 0.0}
    clock.advance(30)
    assert client.get(SVC, users(999)).rows[0].values == {"orders": 1, "spend": 0.0}


# -- generations -------------------------------------------------------------------------------
def test_a_materialization_invalidates_after_the_check_interval(
    make_client: Callable[..., FeatureClient],
    backend: FakeBackend,
    gens: MemoryGenerations,
    clock: FakeClock,
) -> None:
    client = make_client(generation_check_s=0.5)
    client.get(SVC, users(1, 2))
    backend.data[1] = {"orders": 100, "spend": 0.0}
    gens.bump("user_stats__v1")
    clock.advance(0.4)
    assert client.get(SVC, users(1)).rows[0].values == {"orders": 1, "spend": 1.5}
    clock.advance(0.1)
    batch = client.get(SVC, users(1, 2))
    assert batch.values[0] == {"orders": 100, "spend": 0.0}
    assert [row.status for row in batch.rows] == ["fetched", "fetched"]
    assert backend.calls[-1] == [1, 2]


def test_a_materialization_of_another_view_keeps_entries(
    make_client: Callable[..., FeatureClient], gens: MemoryGenerations, clock: FakeClock
) -> None:
    client = make_client(generation_check_s=0.5)
    client.get(SVC, users(1))
    gens.bump("other__v1")
    clock.advance(1)
    assert client.get(SVC, users(1)).rows[0].status == "hit"


def test_a_materialization_in_another_process_invalidates(
    redis_url: str, backend: FakeBackend, clock: FakeClock
) -> None:
    gens = RedisGenerations(redis_url, namespace=f"mlcp_test_{uuid.uuid4().hex[:10]}")
    try:
        client = FeatureClient(backend, gens, CacheConfig(generation_check_s=0.5), clock=clock)
        client.get(SVC, users(1))
        backend.data[1] = {"orders": 100, "spend": 0.0}
        script = (
            "import sys; from features.generations import RedisGenerations; "
            "RedisGenerations(sys.argv[1], sys.argv[2]).bump('user_stats__v1')"
        )
        subprocess.run(
            [sys.executable, "-c", script, redis_url, gens.namespace],
            cwd=ROOT,
            check=True,
            timeout=60,
        )
        assert client.get(SVC, users(1)).rows[0].status == "hit"  # not checked yet
        clock.advance(0.5)
        row = client.get(SVC, users(1)).rows[0]
        assert row.status == "fetched"
        assert row.values == {"orders": 100, "spend": 0.0}
        assert backend.calls == [[1], [1]]
    finally:
        gens._redis.delete(gens.key("user_stats__v1"))
        gens.close()


class BrokenGenerations:
    def current(self, views: Any) -> dict[str, int]:
        raise BackendUnavailable("generations are down")

    def bump(self, view: str) -> int:
        raise BackendUnavailable("generations are down")


def test_reads_go_on_by_ttl_when_generations_cannot_be_read(
    backend: FakeBackend, clock: FakeClock
) -> None:
    client = FeatureClient(backend, BrokenGenerations(), CacheConfig(default_ttl_s=10), clock=clock)
    client.get(SVC, users(1))
    clock.advance(5)
    assert client.get(SVC, users(1)).rows[0].status == "hit"
    clock.advance(5)
    assert client.get(SVC, users(1)).rows[0].status == "fetched"


def test_explicit_invalidation(
    make_client: Callable[..., FeatureClient], backend: FakeBackend
) -> None:
    client = make_client()
    client.get(SVC, users(1, 2, 3))
    client.invalidate(SVC, users(1))
    assert [r.status for r in client.get(SVC, users(1, 2)).rows] == ["fetched", "hit"]
    client.invalidate(SVC)
    assert [r.status for r in client.get(SVC, users(2, 3)).rows] == ["fetched", "fetched"]
    client.invalidate()
    assert client.get(SVC, users(3)).rows[0].status == "fetched"
    assert backend.calls == [[1, 2, 3], [1], [2, 3], [3]]


# -- the store down ----------------------------------------------------------------------------
def test_store_down_serves_stale_rows_younger_than_max_staleness(
    make_client: Callable[..., FeatureClient],
    backend: FakeBackend,
    clock: FakeClock,
    registry: CollectorRegistry,
) -> None:
    client = make_client(default_ttl_s=60, max_staleness_s=300)
    client.get(SVC, users(1, 999))
    clock.advance(100)
    backend.down = True
    batch = client.get(SVC, users(1, 999))
    assert [(row.status, row.age_s) for row in batch.rows] == [("stale", 100), ("stale", 100)]
    assert batch.values == [{"orders": 1, "spend": 1.5}, None]
    assert sample(registry, "mlcp_feature_cache_stale_served_total", service=SVC) == 2
    assert sample(registry, "mlcp_feature_backend_errors_total", service=SVC) == 1
    assert sample(registry, "mlcp_feature_get_seconds_count", service=SVC, outcome="stale") == 1


def test_store_down_past_max_staleness_raises(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client(default_ttl_s=60, max_staleness_s=300)
    client.get(SVC, users(1))
    clock.advance(300.5)
    backend.down = True
    with pytest.raises(OnlineStoreUnavailable, match=r"churn@1 \(fake store is down\)") as info:
        client.get(SVC, users(1))
    assert info.value.service == SVC


def test_store_down_with_one_row_never_cached_raises(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client()
    client.get(SVC, users(1))
    clock.advance(100)
    backend.down = True
    with pytest.raises(OnlineStoreUnavailable, match="younger than 300 s"):
        client.get(SVC, users(1, 2))


def test_partial_gets_mark_only_the_rows_the_store_could_not_give(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client(default_ttl_s=10)
    client.get(SVC, users(1, 2))
    clock.advance(5)
    client.get(SVC, users(2))
    clock.advance(6)  # 1 and 2 are past their TTL; 2 was read later
    backend.down = True
    batch = client.get(SVC, users(1, 3, 1), partial=True)
    assert [row.status for row in batch.rows] == ["stale", "unavailable", "stale"]
    assert batch.rows[0].values == {"orders": 1, "spend": 1.5}
    assert batch.rows[0].age_s == pytest.approx(11)
    assert batch.rows[1].values is None


def test_an_outage_is_logged_once_down_and_once_back(
    make_client: Callable[..., FeatureClient],
    backend: FakeBackend,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(unavailable_backoff_s=0)
    backend.down = True
    for key in range(1, 6):
        client.get(SVC, users(key), partial=True)
    backend.down = False
    client.get(SVC, users(9))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert "unavailable (fake store is down)" in warnings[0]
    assert "back after 5 failures" in warnings[1]


class HangingGenerations:
    """Generations whose reads block until released (a frozen database)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = self.answered = 0
        self.value = 0

    def current(self, views: Any) -> dict[str, int]:
        self.calls += 1
        self.release.wait(30)
        answer = {view: self.value for view in views}
        self.answered += 1
        return answer

    def bump(self, view: str) -> int:
        self.value += 1
        return self.value


def test_background_checks_never_hold_a_read_and_run_one_at_a_time(
    backend: FakeBackend, clock: FakeClock
) -> None:
    gens = HangingGenerations()
    config = CacheConfig(generation_check_s=0.5, check_in_background=True)
    client = FeatureClient(backend, gens, config, clock=clock)
    for _ in range(5):  # each get is due a check; the first one hangs
        assert client.get(SVC, users(1)).rows[0].values == {"orders": 1, "spend": 1.5}
        clock.advance(1)
    wait_for(lambda: gens.calls == 1)
    assert gens.calls == 1
    gens.release.set()  # the first answer is the base the next checks compare with
    wait_for(lambda: gens.answered == 1)
    gens.bump("user_stats__v1")

    def invalidated() -> bool:
        clock.advance(1)
        return client.get(SVC, users(1)).rows[0].status == "fetched"

    wait_for(invalidated)
    assert gens.calls >= 2


def test_fresh_rows_are_served_while_the_store_is_down(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client()
    client.get(SVC, users(1))
    backend.down = True
    clock.advance(10)
    assert client.get(SVC, users(1)).rows[0].status == "hit"
    assert backend.calls == [[1]]


def test_after_a_failure_the_store_is_left_alone_for_the_backoff(
    make_client: Callable[..., FeatureClient], backend: FakeBackend, clock: FakeClock
) -> None:
    client = make_client(default_ttl_s=1, unavailable_backoff_s=2)
    client.get(SVC, users(1, 2))
    clock.advance(5)
    backend.down = True
    assert client.get(SVC, users(1)).rows[0].status == "stale"
    calls = len(backend.calls)
    clock.advance(1.9)
    backend.down = False  # back up, but not tried again before the backoff ends
    assert client.get(SVC, users(2)).rows[0].status == "stale"
    assert len(backend.calls) == calls
    clock.advance(0.1)
    assert client.get(SVC, users(2)).rows[0].status == "fetched"
    assert len(backend.calls) == calls + 1


def test_other_backend_errors_propagate_and_release_the_key(
    make_client: Callable[..., FeatureClient], backend: FakeBackend
) -> None:
    client = make_client()
    backend.error = RuntimeError("bug")
    with pytest.raises(RuntimeError, match="bug"):
        client.get(SVC, users(1))
    backend.error = None
    assert client.get(SVC, users(1)).rows[0].status == "fetched"


# -- threads -----------------------------------------------------------------------------------
class BlockingBackend(FakeBackend):
    def __init__(self, data: dict[int, dict[str, Any]]) -> None:
        super().__init__(data)
        self.release = threading.Event()
        self.entered = 0

    def read(self, service: VersionedRef, entity_rows: list[dict[str, Any]]) -> list[Any]:
        with self.lock:
            self.entered += 1
        assert self.release.wait(timeout=30)
        return super().read(service, entity_rows)


def test_concurrent_gets_of_a_cold_key_make_one_backend_call(
    gens: MemoryGenerations, registry: CollectorRegistry
) -> None:
    backend = BlockingBackend({7: {"orders": 7}})
    client = FeatureClient(backend, gens, metrics=FeatureMetrics(registry))
    threads = 8
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(client.get, SVC, users(7)) for _ in range(threads)]
        # Release the read only once every other thread waits on it.
        wait_for(
            lambda: (
                sample(registry, "mlcp_feature_cache_coalesced_total", service=SVC) == threads - 1
            )
        )
        assert backend.entered == 1
        backend.release.set()
        rows = [future.result(timeout=30).rows[0] for future in futures]
    assert backend.calls == [[7]]
    assert {row.status for row in rows} == {"fetched"}
    assert all(row.values == {"orders": 7} for row in rows)


def test_a_waiter_gets_stale_when_the_fetch_it_awaited_failed(
    clock: FakeClock, gens: MemoryGenerations, registry: CollectorRegistry
) -> None:
    backend = BlockingBackend({7: {"orders": 7}})
    backend.release.set()
    client = FeatureClient(backend, gens, clock=clock, metrics=FeatureMetrics(registry))
    client.get(SVC, users(7))
    clock.advance(100)
    backend.release.clear()
    backend.down = True
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(client.get, SVC, users(7)) for _ in range(2)]
        wait_for(lambda: sample(registry, "mlcp_feature_cache_coalesced_total", service=SVC) == 1)
        backend.release.set()
        statuses = [future.result(timeout=30).rows[0].status for future in futures]
    assert statuses == ["stale", "stale"]
    assert len(backend.calls) == 2


def test_concurrent_overlapping_batches_fetch_each_key_exactly_once(
    backend: FakeBackend, gens: MemoryGenerations
) -> None:
    client = FeatureClient(backend, gens, CacheConfig(default_ttl_s=3600))
    rng = random.Random(0)
    batches = [rng.sample(range(1, 101), rng.randint(1, 20)) for _ in range(400)]

    def run(ids: list[int]) -> None:
        batch = client.get(SVC, users(*ids))
        assert [row.values["orders"] for row in batch.rows if row.values] == ids

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(run, batches))
    fetched = [key for call in backend.calls for key in call]
    assert sorted(fetched) == sorted({key for ids in batches for key in ids})


# -- bounds, config, metrics -------------------------------------------------------------------
def test_cache_stays_within_max_entries(
    make_client: Callable[..., FeatureClient], registry: CollectorRegistry
) -> None:
    client = make_client(max_entries=10)
    for start in range(1, 100, 10):
        client.get(SVC, users(*range(start, start + 10)))
    assert client.entries == 10
    assert sample(registry, "mlcp_feature_cache_evictions_total") == 90
    assert sample(registry, "mlcp_feature_cache_entries") == 10


@pytest.mark.parametrize(
    "bad",
    [
        {"max_entries": 0},
        {"default_ttl_s": -1},
        {"max_staleness_s": -1},
        {"generation_check_s": math.nan},
        {"unavailable_backoff_s": -1},
    ],
)
def test_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        CacheConfig(**bad)


def test_metrics_count_hits_misses_fetches_and_latency(
    make_client: Callable[..., FeatureClient],
    gens: MemoryGenerations,
    clock: FakeClock,
    registry: CollectorRegistry,
) -> None:
    client = make_client()
    client.get(SVC, users(1, 2, 3))
    clock.advance(2)
    client.get(SVC, users(1, 2, 4))
    gens.bump("user_stats__v1")
    clock.advance(1)
    client.get(SVC, users(1))

    def value(name: str, **labels: str) -> float:
        return sample(registry, name, service=SVC, **labels)

    assert value("mlcp_feature_cache_hits_total") == 2
    assert value("mlcp_feature_cache_misses_total") == 5
    assert value("mlcp_feature_backend_fetch_seconds_count") == 3
    assert value("mlcp_feature_get_seconds_count", outcome="fetched") == 3
    assert value("mlcp_feature_cache_invalidations_total") == 1
    assert value("mlcp_feature_served_age_seconds_count") == 3
    assert value("mlcp_feature_served_age_seconds_sum") == 2.0  # the second get's oldest row
    with pytest.raises(FeatureNotFound):
        client.get("nope@1", users(1))
    assert sample(registry, "mlcp_feature_get_seconds_count", service="nope@1", outcome="error")


def test_metrics_register_once_per_registry_and_render(registry: CollectorRegistry) -> None:
    metrics = FeatureMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        FeatureMetrics(registry)
    client = FeatureClient(FakeBackend({1: {"x": 1}}), MemoryGenerations(), metrics=metrics)
    client.get(SVC, users(1))
    client.get(SVC, users(1))
    labels = {"service": SVC, "outcome": "fetched", "le": "+Inf"}
    assert registry.get_sample_value("mlcp_feature_get_seconds_bucket", labels) == 1
    text = generate_latest(registry).decode()
    assert 'mlcp_feature_cache_hits_total{service="churn@1"} 1.0' in text
    assert 'mlcp_feature_cache_misses_total{service="churn@1"} 1.0' in text
    assert "mlcp_feature_cache_entries 1.0" in text


# -- the property ------------------------------------------------------------------------------
KEYS = [1, 2, 3, 4]
VIEWS = ("a__v1", "b__v1")
WRITE_S = 0.001  # a write takes time: no read happens at the very instant of a write


def seconds(most: float) -> st.SearchStrategy[float]:
    """Round values (boundaries: equal to a TTL, a check interval) as well as arbitrary ones."""
    return st.one_of(
        st.sampled_from([x for x in (0.0, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0) if x <= most]),
        st.floats(0, most, allow_nan=False),
    )


get_op = st.tuples(st.just("get"), st.lists(st.sampled_from(KEYS), min_size=1, max_size=6))
op = st.one_of(
    get_op,
    st.tuples(
        st.just("advance"),
        st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 61.0]), seconds(150)),
    ),
    get_op,
    st.tuples(
        st.just("materialize"),
        st.lists(st.sampled_from(KEYS), max_size=4),
        st.sampled_from(VIEWS),
    ),
    st.tuples(st.just("silent_write"), st.sampled_from(KEYS)),
    st.tuples(st.just("forget"), st.sampled_from(KEYS)),
    st.tuples(st.just("down"), st.booleans()),
)


class HistoryBackend(FakeBackend):
    """Remembers every value each key had, and when."""

    def __init__(self, clock: FakeClock, freshness_s: float | None) -> None:
        super().__init__({k: {"v": 0} for k in KEYS}, VIEWS, freshness_s)
        self.clock = clock
        self.history: dict[int, list[tuple[float, Any]]] = {
            k: [(-math.inf, {"v": 0})] for k in KEYS
        }
        self.writes = 0

    def write(self, key: int, value: dict[str, Any] | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        self.history[key].append((self.clock(), value))
        self.clock.advance(WRITE_S)

    def new_value(self) -> dict[str, Any]:
        self.writes += 1
        return {"v": self.writes}

    def values_between(self, key: int, lo: float, hi: float) -> list[Any]:
        """Every value the key held at some instant of [lo, hi]; a value holds from its write
        until the next one (excluded): a read at the instant of a write sees the new value."""
        versions = self.history[key]
        found = []
        for i, (start, value) in enumerate(versions):
            end = versions[i + 1][0] if i + 1 < len(versions) else math.inf
            if start <= hi and end > lo:
                found.append(value)
        return found


def scenario(*ops: tuple[Any, ...], ttl: float = 30, fresh: float | None = None) -> Any:
    return example(
        ops=list(ops),
        default_ttl_s=ttl,
        freshness_s=fresh,
        max_staleness_s=60,
        generation_check_s=0.5,
    )


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# The paths that matter, always run (random search finds them too, not every time).
@scenario(("get", [1]), ("materialize", [1], "a__v1"), ("advance", 0.5), ("get", [1]))
@scenario(("get", [1]), ("silent_write", 1), ("advance", 10), ("get", [1]), fresh=5)
@scenario(
    ("get", [1]), ("advance", 50), ("down", True), ("get", [1, 2]), ("advance", 20), ("get", [1])
)
@scenario(("get", [1]), ("forget", 1), ("advance", 31), ("get", [1]), ("down", True), ("get", [1]))
@given(
    ops=st.lists(op, min_size=3, max_size=50),
    default_ttl_s=seconds(60),
    freshness_s=st.one_of(st.none(), seconds(60)),
    max_staleness_s=seconds(120),
    generation_check_s=seconds(10),
)
def test_served_values_were_the_stores_within_ttl_and_after_seen_materializations(
    ops: list[tuple[Any, ...]],
    default_ttl_s: float,
    freshness_s: float | None,
    max_staleness_s: float,
    generation_check_s: float,
) -> None:
    clock = FakeClock(0.0)
    backend = HistoryBackend(clock, freshness_s)
    gens = MemoryGenerations()
    config = CacheConfig(
        default_ttl_s=default_ttl_s,
        max_staleness_s=max_staleness_s,
        generation_check_s=generation_check_s,
        unavailable_backoff_s=0.0,
    )
    ttl_s = default_ttl_s if freshness_s is None else min(default_ttl_s, freshness_s)
    client = FeatureClient(backend, gens, config, clock=clock)
    bumps: list[float] = []
    eps = 1e-9
    for name, *args in ops:
        if name == "advance":
            clock.advance(args[0])
        elif name == "materialize":
            for key in args[0]:
                backend.write(key, backend.new_value())
            gens.bump(args[1])
            bumps.append(clock())
            clock.advance(WRITE_S)
        elif name == "silent_write":
            backend.write(args[0], backend.new_value())
        elif name == "forget":
            backend.write(args[0], None)
        elif name == "down":
            backend.down = args[0]
        else:
            now = clock()
            try:
                batch = client.get(SVC, users(*args[0]))
            except OnlineStoreUnavailable:
                assert backend.down
                continue
            # A materialization is seen once a generation check ran after it.
            seen = [t for t in bumps if t + generation_check_s <= now]
            oldest = max([now - ttl_s - eps, *seen])
            for key, row in zip(args[0], batch.rows, strict=True):
                assert row.age_s >= 0
                if row.status == "stale":
                    assert backend.down
                    assert row.age_s <= max_staleness_s + eps
                    fetched_at = now - row.age_s
                    assert row.values in backend.values_between(
                        key, fetched_at - eps, fetched_at + eps
                    )
                else:
                    assert row.status == ("missing" if row.values is None else row.status)
                    if row.status == "hit" or (row.status == "missing" and row.age_s > 0):
                        assert row.age_s < ttl_s + eps
                    assert row.values in backend.values_between(key, oldest, now)
