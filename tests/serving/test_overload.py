"""Overload end to end (a real uvicorn): a slow model under more load than it can take.

Critical requests keep being answered within their deadline while batch-class ones are shed
with 503 and Retry-After; a client over its rate limit gets 429 while others go on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
import torch

from serving.config import BatchingConfig, ClientPolicy, RateLimit, ServerConfig
from serving.manager import ModelManager
from serving.spec import Deployment
from tests.serving.conftest import DictLookup, Server, StaticLoader, StaticSource, spec_for

pytestmark = pytest.mark.e2e

COMPUTE_S = 0.02  # per batch, whatever its size: at 4 rows a batch, ~200 rows/s at most


class Slow(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(COMPUTE_S)
        return x.sum(dim=1, keepdim=True)


def body() -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [[1] * 5]}]}


def serve(config: ServerConfig) -> Server:
    loader = StaticLoader()
    loader.add(spec_for("slow", 1), Slow())
    source = StaticSource({"slow": Deployment("slow", champion=1)})
    return Server(ModelManager(loader, source, config, lookup=DictLookup({})))


def test_critical_requests_keep_their_deadline_while_batch_ones_are_shed() -> None:
    config = ServerConfig(
        batching=BatchingConfig(max_batch_size=4, max_delay_ms=1.0, max_queue=32),
        poll_s=0.05,
    )
    stop = threading.Event()
    batch_codes: list[int] = []
    retry_after: set[str] = set()

    async def flood() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def one() -> None:
                while not stop.is_set():
                    r = await client.post(
                        "/v2/models/slow/infer",
                        json=body(),
                        headers={"X-Priority": "batch", "X-Request-Timeout-Ms": "2000"},
                    )
                    batch_codes.append(r.status_code)
                    if r.status_code == 503:
                        retry_after.add(r.headers.get("retry-after", ""))
                        await asyncio.sleep(0.005)

            await asyncio.gather(*(one() for _ in range(48)))

    server = serve(config)
    with server:
        flooding = threading.Thread(target=lambda: asyncio.run(flood()))
        flooding.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                deadline = time.monotonic() + 60
                while batch_codes.count(503) < 20:  # overloaded: batch requests are shed
                    assert time.monotonic() < deadline, f"never overloaded: {batch_codes[-5:]}"
                    client.get("/v2/health/live")
                critical = [
                    client.post(
                        "/v2/models/slow/infer",
                        json=body(),
                        headers={"X-Priority": "critical", "X-Request-Timeout-Ms": "1000"},
                    )
                    for _ in range(30)
                ]
                served = client.get("/v1/serving/state").json()
                state = served["versions"]["slow@1"]
                metrics = client.get("/metrics").text
        finally:
            stop.set()
            flooding.join(60)
    assert [r.status_code for r in critical] == [200] * 30, [r.text for r in critical][:3]
    assert set(batch_codes) <= {200, 503, 504}, set(batch_codes)
    assert batch_codes.count(503) >= 20
    assert retry_after == {"1"}
    assert state["rejected"] + state["shed"] > 0
    # Once critical requests came, the flood was also kept out at the door (in-flight cap).
    assert served["refused_at_door"] > 0
    # Saturated: the device never rests and requests queue; the gauge to scale on says so.
    assert served["busy"] >= 0.7
    assert "mlcp_serving_busy " in metrics


def test_a_client_over_its_limit_gets_429_and_others_are_unaffected() -> None:
    clients = ClientPolicy(rates={"greedy": RateLimit(rate_per_s=1, burst=3)})
    config = ServerConfig(batching=BatchingConfig(4, 1.0), poll_s=0.05, clients=clients)
    server = serve(config)
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        greedy = [
            client.post("/v2/models/slow/infer", json=body(), headers={"X-Client-ID": "greedy"})
            for _ in range(6)
        ]
        polite = [
            client.post("/v2/models/slow/infer", json=body(), headers={"X-Client-ID": "polite"})
            for _ in range(6)
        ]
    codes = [r.status_code for r in greedy]
    assert codes[:3] == [200, 200, 200]
    assert 429 in codes[3:]
    limited = next(r for r in greedy if r.status_code == 429)
    assert limited.headers["retry-after"] == "1"
    assert "greedy" in limited.json()["error"]
    assert [r.status_code for r in polite] == [200] * 6
