"""A small real deployment for end-to-end controller tests and the rollback benchmark: a
control plane (SQLite or PostgreSQL), real `mlcp serve` replicas and `mlcp controller run`
processes on loopback, models registered through the real registry, and a load generator
that records every answer.

    with Cluster(home, env) as cluster:
        cluster.register("m", "good", seed=1)
        replicas = [cluster.serve("r1"), cluster.serve("r2")]
        controller = cluster.controller()
        with Load(cluster.replica_urls, "m") as load:
            ...
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from controlplane.demo.stage import Process, free_port
from tests.waiting import wait_until

MLCP = str(Path(sys.executable).with_name("mlcp"))
WIDTH = 5


# -- models -----------------------------------------------------------------------------------
def good_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(WIDTH, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Sigmoid()
    ).eval()


class Slow(torch.nn.Module):
    """A good model that also multiplies a 1280x1280 matrix by itself twice on every batch:
    the same answers, about 55 ms later per batch on one core of this machine (the good model
    takes 0.03 ms): a latency regression."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.inner = good_model(seed)
        torch.manual_seed(seed + 100)
        self.weight = torch.nn.Parameter(torch.randn(1280, 1280) / 1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        burn = (self.weight @ self.weight @ self.weight).sum() * 0.0
        return self.inner(x) + burn


class NaNAbove(torch.nn.Module):
    """A good model that answers NaN for rows whose first input is above ``limit``."""

    def __init__(self, seed: int, limit: float) -> None:
        super().__init__()
        self.inner = good_model(seed)
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return torch.where(x[:, :1] > self.limit, torch.full_like(out, float("nan")), out)


MODELS: dict[str, Callable[[int], torch.nn.Module]] = {
    "good": good_model,
    "slow": Slow,
    "failing": lambda seed: NaNAbove(seed, 0.5),  # fails about half of uniform [0, 1) traffic
    "fragile": lambda seed: NaNAbove(seed, 100.0),  # fails only on inputs above 100
}


def policy_yaml(**overrides: Any) -> str:
    """A fast policy for tests: half-second analyses, small traffic minimums."""
    canary = {
        "steps": [20, 50],
        "interval_s": 0.5,
        "min_requests": 20,
        "success_windows": 2,
        "failure_limit": 0,
        # A loaded 2-core machine can starve a 20% canary of traffic for a while: holding for
        # too little traffic is tested on its own (a test sets this lower).
        "inconclusive_limit": 40,
        **overrides.pop("canary", {}),
    }
    slo = {
        "max_error_rate": 0.05,
        "breach_windows": 2,
        "min_requests": 20,
        "max_canary_p99_ratio": 3,
        "min_p99_increase_ms": 10,
        **overrides.pop("slo", {}),
    }
    drift = overrides.pop("drift", None)
    return (
        "gates:\n  schema: {inputs: [{dtype: float32, shape: [-1, 5]}]}\n"
        f"canary: {_flow(canary)}\nslo: {_flow(slo)}\n"
        + (f"drift: {_flow(drift)}\n" if drift else "")
    )


def _flow(values: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}"


# -- processes (Process and free_port: the demo's) ------------------------------------------
@dataclass
class Cluster:
    """Replicas and controllers sharing one control plane (settings in ``env``)."""

    home: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def spawn(self, name: str, *argv: str) -> Process:
        log = self.home / f"{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            [MLCP, *argv], cwd=self.home, env=self.env, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def serve(self, replica: str, *extra: str, window_s: float = 0.5) -> Process:
        port = free_port()
        process = self.spawn(
            replica, "serve", "--port", str(port), "--replica", replica, "--poll-s", "0.2",
            "--window-s", str(window_s), "--heartbeat-s", "0.5", *extra,
        )  # fmt: skip
        process.url = f"http://127.0.0.1:{port}"
        return process

    def controller(self, name: str = "controller", interval: str = "0.25s") -> Process:
        return self.spawn(name, "controller", "run", "--interval", interval, "--json")

    def wait_ready(self, replica: Process, timeout_s: float = 180) -> None:
        def ready() -> bool:
            assert replica.alive(), replica.tail()
            try:
                return httpx.get(f"{replica.url}/v2/health/live", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout_s, f"{replica.name} to start")

    def state(self, replica: Process) -> dict[str, Any]:
        return httpx.get(f"{replica.url}/v1/serving/state", timeout=10).json()

    def serves(self, replica: Process, name: str, champion: int, challenger: int | None) -> bool:
        deployment = self.state(replica)["deployments"].get(name)
        return deployment is not None and (deployment["champion"], deployment["challenger"]) == (
            champion,
            challenger,
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- load -------------------------------------------------------------------------------------
@dataclass
class Answer:
    at: float
    status: int
    version: str | None
    error: str | None
    replica: str


class Load:
    """Threads sending /v2 infer requests to every replica in turn, recording every answer.

    ``inputs`` is read per request, so a test can switch the traffic (to inputs that break a
    fragile model) while it runs. With ``entities`` (a count), each request is one random
    ``customer_id`` below it, sent to the entity endpoint: the replicas read its features.
    """

    def __init__(
        self,
        urls: list[str],
        name: str,
        threads: int = 4,
        pause_s: float = 0.0,
        entities: int | None = None,
    ) -> None:
        self.urls, self.name, self.threads, self.pause_s = urls, name, threads, pause_s
        self.entities = entities
        self.answers: list[Answer] = []
        self.failures: list[str] = []  # requests that got no HTTP answer at all
        self.sent = 0
        self.low, self.high = 0.0, 1.0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def poison(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def _run(self, index: int) -> None:
        rng = np.random.default_rng(index)
        clients = [httpx.Client(base_url=url, timeout=60) for url in self.urls]
        try:
            turn = index
            while not self._stop.is_set():
                turn += 1
                client = clients[turn % len(clients)]
                path, body = self._request(rng)
                with self._lock:
                    self.sent += 1
                try:
                    r = client.post(path, json=body)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                payload = r.json()
                answer = Answer(
                    time.monotonic(),
                    r.status_code,
                    payload.get("model_version"),
                    payload.get("error") if r.status_code >= 400 else None,
                    str(client.base_url),
                )
                with self._lock:
                    self.answers.append(answer)
                if self.pause_s:
                    self._stop.wait(self.pause_s)
        finally:
            for client in clients:
                client.close()

    def _request(self, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
        if self.entities is not None:
            entity = {"customer_id": int(rng.integers(self.entities))}
            return f"/v1/models/{self.name}/predict", {"entities": [entity]}
        x = rng.uniform(self.low, self.high, (1, WIDTH)).astype(np.float32)
        body = {"inputs": [{"name": "input", "shape": [1, WIDTH], "datatype": "FP32",
                            "data": x.reshape(-1).tolist()}]}  # fmt: skip
        return f"/v2/models/{self.name}/infer", body

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, args=(i,)) for i in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def since(self, moment: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.at >= moment]

    def count(self) -> int:
        with self._lock:
            return len(self.answers)


@contextmanager
def running(load: Load) -> Iterator[Load]:
    with load:
        yield load
