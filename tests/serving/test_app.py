"""End to end: a real uvicorn on loopback serving the app, called over HTTP.

Answers are checked against the model run directly; overload, deadlines and bad bodies must
give 503 / 504 / 4xx with a JSON error, never a 500.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
import torch

from serving.config import BatchingConfig, ServerConfig
from serving.manager import ModelManager
from serving.spec import Deployment
from tests.serving.conftest import (
    FEATURES,
    DictLookup,
    Gate,
    ListSink,
    Server,
    StaticLoader,
    StaticSource,
    make_model,
    spec_for,
)

pytestmark = pytest.mark.e2e

ROWS = {i: {name: float(i % 7) + j / 10 for j, name in enumerate(FEATURES)} for i in range(100)}


def infer_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [len(rows), 5], "datatype": "FP32", "data": rows}
    return {"inputs": [tensor], **extra}


def features_of(ids: list[int]) -> torch.Tensor:
    return torch.tensor([[ROWS[i][name] for name in FEATURES] for i in ids])


def serve(
    loader: StaticLoader,
    *deployments: Deployment,
    config: ServerConfig | None = None,
    lookup: DictLookup | None = None,
    sink: ListSink | None = None,
) -> tuple[Server, StaticSource]:
    source = StaticSource({d.name: d for d in deployments})
    config = config or ServerConfig(batching=BatchingConfig(8, 1.0), poll_s=0.05)
    manager = ModelManager(loader, source, config, lookup=lookup or DictLookup(ROWS), sink=sink)
    return Server(manager), source


def test_v2_infer_answers_what_the_model_computes(loader: StaticLoader) -> None:
    server, _ = serve(loader, Deployment("churn", champion=1))
    x = torch.randn(3, 5)
    with server, httpx.Client(base_url=server.url) as client:
        r = client.post("/v2/models/churn/infer", json=infer_body(x.tolist(), id="a1"))
        pinned = client.post("/v2/models/churn/versions/1/infer", json=infer_body(x.tolist()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("churn", "1", "a1")
    output = body["outputs"][0]
    assert output["shape"] == [3, 1]
    assert output["datatype"] == "FP32"
    expected = make_model(1)(x).detach().reshape(-1)
    assert torch.allclose(torch.tensor(output["data"]), expected, atol=1e-6)
    assert pinned.json()["outputs"] == body["outputs"]


def test_health_metadata_and_readiness(loader: StaticLoader) -> None:
    server, _ = serve(loader, Deployment("churn", champion=1))
    with server, httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        meta = client.get("/v2/models/churn").json()
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]
        assert meta["versions"] == ["1"]
        assert client.get("/v2/models/churn/ready").json()["ready"] is True
        assert client.get("/v2/models/churn/versions/1/ready").status_code == 200
        assert client.get("/v2/models/churn/versions/2/ready").status_code == 404
        missing = client.get("/v2/models/nope")
        assert missing.status_code == 404
        assert "served: churn@1" in missing.json()["error"]
        assert client.get("/v2").json()["name"] == "mlcp"


def test_entity_endpoint_looks_features_up_and_predicts(loader: StaticLoader) -> None:
    server, _ = serve(loader, Deployment("churn", champion=2))
    ids = [3, 14, 15]
    with server, httpx.Client(base_url=server.url) as client:
        r = client.post(
            "/v1/models/churn/predict", json={"entities": [{"customer_id": i} for i in ids]}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "2"
    assert body["versions"] == [2, 2, 2]
    assert body["feature_service"] == "churn_features@1"
    expected = make_model(2)(features_of(ids)).detach().reshape(-1)
    assert torch.allclose(torch.tensor(body["predictions"]), expected, atol=1e-6)


def test_entity_errors_are_4xx_or_503_never_500(loader: StaticLoader) -> None:
    lookup = DictLookup(ROWS)
    server, _ = serve(loader, Deployment("churn", champion=1), lookup=lookup)
    with server, httpx.Client(base_url=server.url) as client:
        unknown = client.post("/v1/models/churn/predict", json={"entities": [{"customer_id": 999}]})
        bad_key = client.post("/v1/models/churn/predict", json={"entities": [{"user": 1}]})
        empty = client.post("/v1/models/churn/predict", json={"entities": []})
        lookup.down = True
        down = client.post("/v1/models/churn/predict", json={"entities": [{"customer_id": 1}]})
    assert unknown.status_code == 422
    assert "customer_id': 999" in unknown.json()["error"]
    assert bad_key.status_code == 400
    assert "customer_id" in bad_key.json()["error"]
    assert empty.status_code == 400
    assert "entities" in empty.json()["error"]
    assert down.status_code == 503
    assert "down" in down.json()["error"]


def test_bad_requests_get_a_json_4xx(loader: StaticLoader) -> None:
    config = ServerConfig(batching=BatchingConfig(8, 1.0), poll_s=0.05, max_body_bytes=4096)
    server, _ = serve(loader, Deployment("churn", champion=1), config=config)
    with server, httpx.Client(base_url=server.url) as client:
        cases = {
            "wrong shape": client.post(
                "/v2/models/churn/infer",
                json={
                    "inputs": [
                        {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
                    ]
                },
            ),
            "not json": client.post("/v2/models/churn/infer", content=b"{oops"),
            "nan": client.post(
                "/v2/models/churn/infer",
                content=b'{"inputs":[{"name":"input","shape":[1,5],"datatype":"FP32",'
                b'"data":[NaN,1,2,3,4]}]}',
            ),
            "too large": client.post("/v2/models/churn/infer", content=b"x" * 5000),
            "too large, chunked": client.post(
                "/v2/models/churn/infer", content=iter([b"x" * 3000, b"x" * 3000])
            ),
            "unknown model": client.post("/v2/models/other/infer", json=infer_body([[1] * 5])),
            "unknown version": client.post(
                "/v2/models/churn/versions/9/infer", json=infer_body([[1] * 5])
            ),
            "bad timeout": client.post(
                "/v2/models/churn/infer",
                json=infer_body([[1] * 5]),
                headers={"X-Request-Timeout-Ms": "soon"},
            ),
        }
    expected = {
        "wrong shape": 400,
        "not json": 400,
        "nan": 400,
        "too large": 413,
        "too large, chunked": 413,
        "unknown model": 404,
        "unknown version": 404,
        "bad timeout": 400,
    }
    assert {k: r.status_code for k, r in cases.items()} == expected
    assert all(isinstance(r.json()["error"], str) for r in cases.values())


def test_request_id_is_echoed_or_made(loader: StaticLoader) -> None:
    server, _ = serve(loader, Deployment("churn", champion=1))
    with server, httpx.Client(base_url=server.url) as client:
        given = client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})
        made = client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
        unsafe = client.get("/v2/health/live", headers={"X-Request-ID": "a b\tc"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "a b\tc"


async def _post_many(url: str, path: str, bodies: list[dict[str, Any]], **kw: Any) -> list[Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post(path, json=b, **kw) for b in bodies))


def test_full_queue_answers_503_with_retry_after(loader: StaticLoader) -> None:
    gate = Gate(make_model(1))
    loader.add(spec_for("slow", 1), gate)
    config = ServerConfig(
        batching=BatchingConfig(max_batch_size=1, max_delay_ms=0, max_queue=2, retry_after_s=2),
        poll_s=0.05,
    )
    server, _ = serve(loader, Deployment("slow", champion=1), config=config)
    with server:
        gate.release.clear()  # after warm-up: from now on the model holds every batch
        gate.entered.clear()
        results: list[Any] = []
        worker = threading.Thread(
            target=lambda: results.extend(
                asyncio.run(
                    _post_many(server.url, "/v2/models/slow/infer", [infer_body([[1] * 5])] * 12)
                )
            )
        )
        worker.start()
        assert gate.entered.wait(30)
        # With the model held, the queue fills and the rest are turned away at once; once
        # they all have their answer, the model is let go and the queued ones are answered.
        with httpx.Client(base_url=server.url) as client:
            _wait_for(client, lambda s: s["versions"]["slow@1"]["rejected"] >= 1)
        gate.release.set()
        worker.join(60)
    codes = sorted(r.status_code for r in results)
    assert set(codes) == {200, 503}, codes
    rejected = [r for r in results if r.status_code == 503]
    assert all(r.headers["retry-after"] == "2" for r in rejected)
    assert all("retry after" in r.json()["error"] for r in rejected)


def test_deadline_gives_504_without_computing(loader: StaticLoader) -> None:
    gate = Gate(make_model(1))
    loader.add(spec_for("slow", 1), gate)
    config = ServerConfig(batching=BatchingConfig(1, 0.0, 64), poll_s=0.05)
    server, _ = serve(loader, Deployment("slow", champion=1), config=config)
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        gate.release.clear()
        gate.entered.clear()
        blocker = threading.Thread(
            target=client.post,
            args=("/v2/models/slow/infer",),
            kwargs={"json": infer_body([[1] * 5])},
        )
        blocker.start()
        assert gate.entered.wait(30)
        rows_before = gate.rows
        late = client.post(
            "/v2/models/slow/infer",
            json=infer_body([[2] * 5]),
            headers={"X-Request-Timeout-Ms": "100"},
        )
        gate.release.set()
        blocker.join(30)
        state = client.get("/v1/serving/state").json()
    assert late.status_code == 504, late.text
    assert "100 ms deadline" in late.json()["error"]
    # Only the blocker computed (its one row); the late request never reached the model.
    assert gate.rows == rows_before
    assert state["versions"]["slow@1"]["expired"] == 1


def test_canary_is_sticky_per_entity_and_shadow_never_answers(loader: StaticLoader) -> None:
    deployment = Deployment("churn", champion=1, challenger=2, canary_percent=30, shadow=3)
    server, _ = serve(loader, deployment)
    entities = [{"customer_id": i} for i in range(60)]
    with server, httpx.Client(base_url=server.url) as client:
        first = client.post("/v1/models/churn/predict", json={"entities": entities}).json()
        again = client.post("/v1/models/churn/predict", json={"entities": entities}).json()
        one_by_one = [
            client.post("/v1/models/churn/predict", json={"entities": [e]}).json()["versions"][0]
            for e in entities[:20]
        ]
        # Shadow copies are not awaited by the answer: wait for the last ones to finish.
        state = _wait_for(client, lambda s: s["versions"]["churn@3"]["rows"] >= 140)
    assert first["versions"] == again["versions"]
    assert one_by_one == first["versions"][:20]
    assert set(first["versions"]) == {1, 2}
    assert 3 not in first["versions"]
    for i, version in enumerate(first["versions"]):
        expected = make_model(version)(features_of([i])).item()
        assert first["predictions"][i] == pytest.approx(expected, abs=1e-6)
    # The shadow computed a copy of every entity and answered none.
    assert state["versions"]["churn@3"]["role"] == "shadow"
    assert state["versions"]["churn@3"]["rows"] == 60 + 60 + 20


def test_a_version_that_fails_to_load_takes_no_traffic(loader: StaticLoader) -> None:
    loader.broken.add(("churn", 2))
    server, source = serve(loader, Deployment("churn", champion=1))
    with server, httpx.Client(base_url=server.url) as client:
        source.set(Deployment("churn", champion=2, revision=1))
        state = _wait_for(client, lambda s: "churn@2" in s["failures"])
        answer = client.post("/v2/models/churn/infer", json=infer_body([[1] * 5]))
    assert "no such version" in state["failures"]["churn@2"]
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"


def test_windows_are_reported_per_version(loader: StaticLoader) -> None:
    sink = ListSink()
    server, _ = serve(loader, Deployment("churn", champion=1), sink=sink)
    with server, httpx.Client(base_url=server.url) as client:
        for _ in range(5):
            client.post("/v2/models/churn/infer", json=infer_body([[1] * 5, [2] * 5]))
        client.post("/v2/models/churn/infer", json=infer_body([[1] * 4]))  # a 400
    [window] = sink.windows  # cut when the server stopped
    assert (window.model, window.version, window.role) == ("churn", 1, "champion")
    assert (window.requests, window.ok, window.client_errors, window.errors) == (6, 5, 1, 0)
    assert window.features["f0"].count == 10
    assert sum(window.latency_counts) == 5  # client errors say nothing of the version's speed


def _wait_for(client: httpx.Client, ok: Any, timeout_s: float = 30) -> dict[str, Any]:
    import time

    end = time.monotonic() + timeout_s
    while True:
        state = client.get("/v1/serving/state").json()
        if ok(state):
            return state
        if time.monotonic() > end:
            raise AssertionError(f"state never matched: {state}")
        threading.Event().wait(0.02)


def test_swap_under_load_loses_and_fails_no_request(loader: StaticLoader) -> None:
    server, source = serve(loader, Deployment("churn", champion=1))
    sent = [0]
    answers: list[tuple[int, str | None]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    async def client_loop(client: httpx.AsyncClient, entity: int) -> None:
        while not stop.is_set():
            sent[0] += 1
            try:
                r = await client.post(
                    "/v1/models/churn/predict", json={"entities": [{"customer_id": entity}]}
                )
                answers.append((r.status_code, r.json().get("model_version")))
            except httpx.HTTPError as exc:
                failures.append(exc)

    async def load() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            await asyncio.gather(*(client_loop(client, i) for i in range(8)))

    with server, httpx.Client(base_url=server.url) as control:
        worker = threading.Thread(target=lambda: asyncio.run(load()))
        worker.start()
        _wait_until(lambda: len(answers) >= 100)
        source.set(Deployment("churn", champion=2, revision=1))
        _wait_until(lambda: sum(v == "2" for _, v in answers) >= 100)
        stop.set()
        worker.join(60)
        state = control.get("/v1/serving/state").json()
    assert not failures
    assert len(answers) == sent[0], "every request sent got an answer"
    assert {code for code, _ in answers} == {200}
    assert {v for _, v in answers} == {"1", "2"}
    assert all(v == "2" for _, v in answers[-50:])
    assert list(state["versions"]) == ["churn@2"]  # the old version drained and left


def _wait_until(condition: Any, timeout_s: float = 60) -> None:
    import time

    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        threading.Event().wait(0.01)


def test_an_outage_fails_only_the_requests_that_needed_missing_features(
    loader: StaticLoader,
) -> None:
    gate = Gate(make_model(1))
    loader.add(spec_for("held", 1, service="churn_features@1"), gate)
    lookup = DictLookup(ROWS)
    lookup.uncached = {50}
    # A long delay: the three requests queued behind the held batch close as one batch.
    config = ServerConfig(batching=BatchingConfig(16, 300.0), poll_s=0.05)
    server, _ = serve(loader, Deployment("held", champion=1), config=config, lookup=lookup)
    x = torch.randn(2, 5)
    bodies = [
        ("/v2/models/held/infer", infer_body(x.tolist())),
        ("/v1/models/held/predict", {"entities": [{"customer_id": 3}, {"customer_id": 4}]}),
        ("/v1/models/held/predict", {"entities": [{"customer_id": 5}, {"customer_id": 50}]}),
    ]

    async def post_all(url: str) -> list[Any]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            first = asyncio.ensure_future(client.post(bodies[0][0], json=bodies[0][1]))
            await asyncio.to_thread(gate.entered.wait, 30)  # the model holds the first batch
            rest = [asyncio.ensure_future(client.post(p, json=b)) for p, b in bodies]
            return [await first, *await asyncio.gather(*rest)]

    results: list[Any] = []
    with server:
        gate.release.clear()
        gate.entered.clear()
        calls = gate.calls
        worker = threading.Thread(target=lambda: results.extend(asyncio.run(post_all(server.url))))
        worker.start()
        assert gate.entered.wait(30)
        deadline = time.monotonic() + 30
        while lookup.calls < 1 and time.monotonic() < deadline:  # the next batch is prepared
            threading.Event().wait(0.01)
        gate.release.set()
        worker.join(60)
    codes = [r.status_code for r in results]
    assert codes == [200, 200, 200, 503], [r.text for r in results]
    assert "customer 50" in results[3].json()["error"]
    assert gate.calls - calls == 2  # the held batch, then one batch of all three
    assert lookup.calls == 1


def test_stale_features_are_said_in_the_answer_and_counted(loader: StaticLoader) -> None:
    lookup = DictLookup(ROWS)
    lookup.stale = {7: 42.5}
    server, _ = serve(loader, Deployment("churn", champion=1), lookup=lookup)
    with server, httpx.Client(base_url=server.url) as client:
        fresh = client.post("/v1/models/churn/predict", json={"entities": [{"customer_id": 1}]})
        stale = client.post(
            "/v1/models/churn/predict",
            json={"entities": [{"customer_id": 1}, {"customer_id": 7}]},
        )
        metrics = client.get("/metrics").text
    assert fresh.status_code == stale.status_code == 200
    assert "stale_features" not in fresh.json()
    assert "x-features-stale-age-s" not in fresh.headers
    assert stale.json()["stale_features"] == {"rows": [1], "age_s": 42.5}
    assert stale.headers["x-features-stale-age-s"] == "42.500"
    assert 'mlcp_serving_stale_answers_total{ref="churn@1"} 1.0' in metrics
