"""Every request counts in the window of the version that took it, with its outcome: ok,
error, rejected or client error; and Prometheus labels name only what is served."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import torch

from serving.config import BatchingConfig, ServerConfig
from serving.routing import BUCKETS, entity_routing_key
from serving.spec import Deployment
from serving.windows import Window
from tests.serving.conftest import (
    Gate,
    ListSink,
    StaticLoader,
    make_model,
    spec_for,
)
from tests.serving.test_app import infer_body, serve
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


class NaNAbove(torch.nn.Module):
    """Answers NaN for rows whose first input is above ``limit``: a model failing some rows."""

    def __init__(self, inner: torch.nn.Module, limit: float) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return torch.where(x[:, :1] > self.limit, torch.full_like(out, float("nan")), out)


def merged(windows: list[Window], version: int) -> dict[str, int]:
    mine = [w for w in windows if w.version == version]
    return {
        "requests": sum(w.requests for w in mine),
        "ok": sum(w.ok for w in mine),
        "errors": sum(w.errors for w in mine),
        "rejected": sum(w.rejected for w in mine),
        "client_errors": sum(w.client_errors for w in mine),
    }


def test_failed_rejected_and_timed_out_requests_each_count_in_the_window() -> None:
    loader = StaticLoader()
    gate = Gate(NaNAbove(make_model(1), limit=100.0))
    loader.add(spec_for("churn", 1, service="churn_features@1"), gate)
    config = ServerConfig(batching=BatchingConfig(max_batch_size=1, max_queue=1), poll_s=0.05)
    sink = ListSink()
    server, _ = serve(loader, Deployment("churn", champion=1), config=config, sink=sink)
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        ok = client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
        failed = client.post("/v2/models/churn/infer", json=infer_body([[500] * 5]))
        bad = client.post("/v2/models/churn/infer", json=infer_body([[1] * 4]))
        # Hold the model: one request computes, the next waits prepared for the model (with a
        # short deadline: it times out, 504), a third waits collected behind it, a fourth
        # fills the queue (its limit), and a fifth is turned away (503).
        gate.release.clear()
        gate.entered.clear()
        results: dict[str, httpx.Response] = {}

        def call(key: str, headers: dict[str, str] | None = None) -> threading.Thread:
            def run() -> None:
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    results[key] = c.post(
                        "/v2/models/churn/infer", json=infer_body([[1] * 5]), headers=headers
                    )

            thread = threading.Thread(target=run)
            thread.start()
            return thread

        batcher = server.manager.live[("churn", 1)].batcher
        threads = [call("held")]
        assert gate.entered.wait(10)
        threads.append(call("timed_out", {"X-Request-Timeout-Ms": "300"}))
        wait_until(lambda: batcher.waiting == 1)  # prepared, waiting for the model
        threads.append(call("staged"))
        wait_until(lambda: batcher.waiting == 2)  # collected, waiting to hand over
        threads.append(call("queued"))
        wait_until(lambda: batcher.depth == 1)  # the queue's limit
        full = client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
        threading.Event().wait(0.4)  # past the 300 ms deadline of the waiting request
        gate.release.set()
        for thread in threads:
            thread.join(10)
    assert (ok.status_code, failed.status_code, bad.status_code) == (200, 500, 400)
    assert "not finite" in failed.json()["error"]
    assert full.status_code == 503
    assert "Retry-After" in full.headers
    assert results["timed_out"].status_code == 504
    assert results["held"].status_code == 200
    assert results["staged"].status_code == results["queued"].status_code == 200
    counts = merged(sink.windows, 1)
    assert counts == {"requests": 8, "ok": 4, "errors": 1, "rejected": 2, "client_errors": 1}
    assert sum(sum(w.latency_counts) for w in sink.windows) == 7  # all but the client error


def test_an_entity_request_split_between_versions_counts_per_version() -> None:
    loader = StaticLoader()
    loader.add(spec_for("churn", 1, service="churn_features@1"), make_model(1))
    # The challenger fails every row (NaN): its share of a request is its error alone.
    loader.add(spec_for("churn", 2, service="churn_features@1"), NaNAbove(make_model(2), -1e9))
    canary = Deployment("churn", champion=1, challenger=2, canary_percent=50)
    sink = ListSink()
    server, _ = serve(loader, canary, sink=sink)
    to_champion = _entity(lambda b: b >= 50 * (BUCKETS // 100))
    to_challenger = _entity(lambda b: b < 50 * (BUCKETS // 100))
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        split = client.post(
            "/v1/models/churn/predict", json={"entities": [to_champion, to_challenger]}
        )
        alone = client.post("/v1/models/churn/predict", json={"entities": [to_champion]})
    assert split.status_code == 500
    assert alone.status_code == 200
    assert merged(sink.windows, 1) == {
        "requests": 2, "ok": 2, "errors": 0, "rejected": 0, "client_errors": 0
    }  # fmt: skip
    assert merged(sink.windows, 2) == {
        "requests": 1, "ok": 0, "errors": 1, "rejected": 0, "client_errors": 0
    }  # fmt: skip


def test_each_version_of_a_split_request_is_timed_until_its_own_rows_answer() -> None:
    """A slow challenger must not make the champion look slow: the champion's share of a
    split request is timed until the champion's rows were answered."""
    loader = StaticLoader()
    champion, challenger = Gate(make_model(1)), Gate(make_model(2))
    loader.add(spec_for("churn", 1, service="churn_features@1"), champion)
    loader.add(spec_for("churn", 2, service="churn_features@1"), challenger)
    canary = Deployment("churn", champion=1, challenger=2, canary_percent=50)
    sink = ListSink()
    server, _ = serve(loader, canary, sink=sink)
    to_champion = _entity(lambda b: b >= 50 * (BUCKETS // 100))
    to_challenger = _entity(lambda b: b < 50 * (BUCKETS // 100))
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        challenger.release.clear()
        results: dict[str, Any] = {}
        body = {"entities": [to_champion, to_challenger]}
        request = threading.Thread(
            target=lambda: results.update(split=client.post("/v1/models/churn/predict", json=body))
        )
        request.start()
        wait_until(lambda: champion.calls >= 1 and challenger.entered.is_set(), what="both parts")
        threading.Event().wait(1.0)  # the challenger's rows take a second longer
        challenger.release.set()
        request.join(30)
    assert results["split"].status_code == 200

    def latency(version: int) -> float:
        return sum(w.latency_sum_s for w in sink.windows if w.version == version)

    assert latency(2) - latency(1) >= 0.5  # half of it: scheduling on a busy machine


def test_metric_labels_name_only_served_versions_and_drained_ones_disappear(
    loader: StaticLoader,
) -> None:
    config = ServerConfig(batching=BatchingConfig(8, 1.0), poll_s=0.05, keep_warm_s=0)
    server, source = serve(loader, Deployment("churn", champion=1), config=config)
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
        client.post("/v2/models/no-such-model-%41/infer", json=infer_body([[1] * 5]))
        client.post("/v2/models/churn/versions/77/infer", json=infer_body([[1] * 5]))
        before = client.get("/metrics").text
        source.set(Deployment("churn", champion=2, revision=1))
        wait_until(lambda: client.get("/v1/serving/state").json()["versions"].keys() == {"churn@2"})
        client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
        # The route switches first; the old version drains, reports, then its series go.
        wait_until(lambda: 'ref="churn@1"' not in client.get("/metrics").text)
        after = client.get("/metrics").text
    assert 'model="churn",version="1"' in before
    assert 'code="404",endpoint="infer",model="_other",version="_other"' in before
    # A version not served here counts as a client error of the model's primary version.
    assert 'code="404",endpoint="infer",model="churn",version="1"' in before
    assert "no-such-model" not in before
    assert 'version="77"' not in before
    assert 'model="churn",version="1"' not in after  # drained: its series are gone
    assert 'ref="churn@1"' not in after
    assert 'model="churn",version="2"' in after


def _entity(wanted: Any) -> dict[str, int]:
    for i in range(100):
        if wanted(entity_routing_key({"customer_id": i})):
            return {"customer_id": i}
    raise AssertionError("no customer id in 0..99 routes that way")


def test_outcome_of_maps_statuses() -> None:
    from serving.windows import CLIENT_ERROR, ERROR, OK, REJECTED, outcome_of

    assert [outcome_of(s) for s in (200, 400, 404, 413, 422, 500, 503, 504)] == [
        OK, CLIENT_ERROR, CLIENT_ERROR, CLIENT_ERROR, CLIENT_ERROR, ERROR, REJECTED, REJECTED
    ]  # fmt: skip
