"""The replica's manager beyond routing: failed loads retried with backoff and forgotten when
no longer wanted, a replaced champion kept warm for a rollback, windows kept while the
database is away, heartbeats saying what is served."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from serving.config import BatchingConfig, ServerConfig
from serving.manager import ModelManager, retry_delay
from serving.spec import Deployment
from tests.serving.conftest import DictLookup, ListSink, Server, StaticLoader, StaticSource
from tests.serving.test_app import ROWS, infer_body
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def start(
    loader: StaticLoader, deployment: Deployment, **config: Any
) -> tuple[Server, StaticSource, ListSink]:
    sink = ListSink()
    source = StaticSource({deployment.name: deployment})
    settings = {"batching": BatchingConfig(8, 1.0), "poll_s": 0.02, **config}
    manager = ModelManager(
        loader, source, ServerConfig(**settings), lookup=DictLookup(ROWS), sink=sink
    )
    return Server(manager), source, sink


def test_retry_delay_doubles_up_to_a_minute() -> None:
    assert [retry_delay(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(20, 1.0) == 60.0


def test_a_failed_load_is_retried_with_backoff_and_forgotten_when_not_wanted(
    loader: StaticLoader,
) -> None:
    loader.broken.add(("churn", 2))
    server, source, _ = start(loader, Deployment("churn", champion=1), load_retry_s=0.5)
    with server, httpx.Client(base_url=server.url) as client:
        source.set(Deployment("churn", champion=2, revision=1))
        wait_until(lambda: loader.loads.count(("churn", 2)) >= 2)  # the first retry, after 0.5 s
        polls = source.reads
        tried = loader.loads.count(("churn", 2))
        wait_until(lambda: source.reads >= polls + 20)  # 20 more polls at 20 ms: ~0.4 s
        # Polls go on every 20 ms; loads wait for the backoff (1 s after the second failure).
        assert loader.loads.count(("churn", 2)) <= tried + 1
        assert "churn@2" in client.get("/v1/serving/state").json()["failures"]
        source.set(Deployment("churn", champion=1, revision=2))
        wait_until(lambda: not client.get("/v1/serving/state").json()["failures"])
        answer = client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
    assert answer.json()["model_version"] == "1"


def test_a_replaced_champion_stays_warm_so_a_rollback_is_a_route_flip(
    loader: StaticLoader,
) -> None:
    server, source, sink = start(loader, Deployment("churn", champion=1), heartbeat_s=0.05)
    with server, httpx.Client(base_url=server.url) as client:
        source.set(Deployment("churn", champion=2, revision=1))
        state = wait_until(
            lambda: (s := client.get("/v1/serving/state").json())["standby"] == ["churn@1"] and s
        )
        assert list(state["versions"]) == ["churn@2"]
        source.set(Deployment("churn", champion=1, revision=2))  # the rollback
        wait_until(lambda: client.post("/v2/models/churn/infer", json=infer_body([[1] * 5])).json()
              ["model_version"] == "1")  # fmt: skip
        wait_until(lambda: sink.heartbeats and sink.heartbeats[-1].serving["churn"].revision == 2)
    assert loader.loads.count(("churn", 1)) == 1  # never loaded again
    beat = sink.heartbeats[-1]
    assert beat.serving["churn"].champion == 1
    assert beat.standby == ("churn@2",)
    assert beat.to_dict()["serving"]["churn"]["revision"] == 2


def test_a_standby_is_dropped_when_its_time_is_up(loader: StaticLoader) -> None:
    server, source, _ = start(
        loader, Deployment("churn", champion=1), keep_warm_s=0.2, heartbeat_s=0.05
    )
    with server, httpx.Client(base_url=server.url) as client:
        source.set(Deployment("churn", champion=2, revision=1))
        wait_until(lambda: client.get("/v1/serving/state").json()["standby"] == ["churn@1"])
        wait_until(lambda: client.get("/v1/serving/state").json()["standby"] == [])


def test_windows_made_while_the_database_is_away_are_sent_when_it_is_back(
    loader: StaticLoader,
) -> None:
    server, _, sink = start(loader, Deployment("churn", champion=1), window_s=0.1)
    sink.down = True
    with server, httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
        wait_until(lambda: client.get("/v1/serving/state").json()["pending_windows"] >= 1)
        assert "mlcp_serving_windows_pending 1.0" in client.get("/metrics").text
        sink.down = False
        wait_until(lambda: client.get("/v1/serving/state").json()["pending_windows"] == 0)
    assert sum(w.requests for w in sink.windows) == 3


def test_the_backlog_is_bounded_and_counts_what_it_drops(loader: StaticLoader) -> None:
    server, _, sink = start(
        loader, Deployment("churn", champion=1), window_s=0.05, max_pending_windows=2
    )
    sink.down = True
    with server, httpx.Client(base_url=server.url) as client:

        def seen() -> float:  # windows made so far: kept plus dropped
            metrics = client.get("/metrics").text
            return _value(metrics, "mlcp_serving_windows_pending") + _value(
                metrics, "mlcp_serving_windows_dropped_total"
            )

        for made in range(1, 7):  # one request per window
            client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
            wait_until(lambda made=made: seen() >= made)
        metrics = client.get("/metrics").text
    assert _value(metrics, "mlcp_serving_windows_pending") == 2
    assert _value(metrics, "mlcp_serving_windows_dropped_total") >= 4


def _value(metrics: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))
