"""Serving fixtures: models held in memory, a desired state the test sets, a real uvicorn.

The loader and state source here stand in for the control plane's (tested against the real
registry and database in tests/controlplane/test_serving_adapters.py and test_serve_e2e.py).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import torch
import uvicorn

from serving.app import create_app
from serving.config import BatchingConfig, ServerConfig
from serving.errors import FeaturesUnavailable, InvalidInput, ModelLoadFailed
from serving.manager import ModelManager
from serving.spec import (
    Deployment,
    LoadedModel,
    LookupRow,
    ModelSpec,
    ReplicaStatus,
    StaleFeatures,
    TensorSpec,
)
from serving.windows import Window

WIDTH = 5
FEATURES = tuple(f"f{i}" for i in range(WIDTH))


def make_model(seed: int, width: int = WIDTH) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(width, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    return net.eval()


def spec_for(name: str, version: int, width: int = WIDTH, service: str | None = None) -> ModelSpec:
    return ModelSpec(
        name=name,
        version=version,
        inputs=(TensorSpec("input", "FP32", (-1, width)),),
        outputs=(TensorSpec("output", "FP32", (-1, 1)),),
        feature_service=service,
        feature_names=FEATURES if service else (),
    )


class Gate(torch.nn.Module):
    """Wraps a model so a test can hold its forward pass until it says go."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        self.entered.set()
        assert self.release.wait(30), "a test never released the gate"
        return self.inner(x)


@dataclass
class StaticLoader:
    """Versions by (name, version); a version in ``broken`` fails to load."""

    models: dict[tuple[str, int], LoadedModel] = field(default_factory=dict)
    broken: set[tuple[str, int]] = field(default_factory=set)
    loads: list[tuple[str, int]] = field(default_factory=list)

    def add(self, spec: ModelSpec, module: torch.nn.Module) -> None:
        self.models[(spec.name, spec.version)] = LoadedModel(spec, module)

    def load(self, name: str, version: int) -> LoadedModel:
        self.loads.append((name, version))
        if (name, version) in self.broken or (name, version) not in self.models:
            raise ModelLoadFailed(f"{name}@{version}", "no such version in this test")
        return self.models[(name, version)]


class StaticSource:
    """A desired state the test changes with ``set``; ``wait`` wakes on a change."""

    def __init__(self, state: dict[str, Deployment] | None = None) -> None:
        self.state = dict(state or {})
        self._changed = threading.Event()
        self.reads = 0

    def set(self, *deployments: Deployment) -> None:
        self.state = {d.name: d for d in deployments}
        self._changed.set()

    def read(self) -> dict[str, Deployment]:
        self.reads += 1
        return dict(self.state)

    def wait(self, timeout_s: float) -> None:
        self._changed.wait(timeout_s)
        self._changed.clear()

    def close(self) -> None:
        self._changed.set()


class DictLookup:
    """Feature rows by customer id; ``down`` makes it unavailable; ids in ``uncached`` are
    unavailable alone (the store is down and they were never cached), ids in ``stale`` are
    served stale, that many seconds old."""

    def __init__(self, rows: Mapping[int, Mapping[str, Any]]) -> None:
        self.rows, self.down, self.calls = dict(rows), False, 0
        self.uncached: set[int] = set()
        self.stale: dict[int, float] = {}
        self.materialized = 0  # the generation: bumped after new rows land

    def materialize(self, rows: Mapping[int, Mapping[str, Any]]) -> None:
        """New data lands, then the generation moves (as a real materialization does)."""
        self.rows = dict(rows)
        self.materialized += 1

    def generation(self, service: str) -> int:
        return self.materialized

    def lookup(self, service: str, entities: list[dict[str, Any]]) -> list[LookupRow]:
        self.calls += 1
        if self.down:
            raise FeaturesUnavailable("the online store is down and nothing is cached")
        out: list[LookupRow] = []
        for entity in entities:
            if "customer_id" not in entity:
                raise InvalidInput(f"entity {entity} lacks 'customer_id', the key of {service}")
            key = int(entity["customer_id"])
            row = self.rows.get(key)
            if key in self.uncached:
                out.append(FeaturesUnavailable(f"no features cached for customer {key}"))
            elif key in self.stale and row is not None:
                out.append(StaleFeatures(row, self.stale[key]))
            else:
                out.append(row)
        return out

    def warm(self, service: str) -> None:
        self.warmed = service


class ListSink:
    """Keeps what replicas report; ``down`` makes it fail like an unreachable database."""

    def __init__(self) -> None:
        self.windows: list[Window] = []
        self.heartbeats: list[ReplicaStatus] = []
        self.down = False

    def report(self, windows: list[Window]) -> None:
        if self.down:
            raise ConnectionError("the control-plane database is unreachable")
        self.windows.extend(windows)

    def heartbeat(self, status: ReplicaStatus) -> None:
        if self.down:
            raise ConnectionError("the control-plane database is unreachable")
        self.heartbeats.append(status)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real uvicorn on loopback in a background thread, serving a ModelManager."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(manager), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = 60.0
        with httpx.Client(base_url=self.url, timeout=5) as client:
            import time

            end = time.monotonic() + deadline
            while time.monotonic() < end:
                try:
                    if client.get("/v2/health/live").status_code == 200 and self.server.started:
                        return self
                except httpx.TransportError:
                    pass
                self.thread.join(0.05)
        raise AssertionError("uvicorn did not start within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop and return its result."""
        loop = self.manager._loop
        assert loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(30)


@pytest.fixture
def loader() -> StaticLoader:
    loader = StaticLoader()
    for version in (1, 2, 3):
        loader.add(spec_for("churn", version, service="churn_features@1"), make_model(version))
    return loader


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(batching=BatchingConfig(max_batch_size=8, max_delay_ms=1.0), poll_s=0.05)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the machine's Redis (the shared prediction cache's
    tests), and its keys deleted after."""
    import uuid

    import redis

    prefix = f"mlcp-test:{uuid.uuid4().hex[:12]}:pred:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
