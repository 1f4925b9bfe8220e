"""The demo's live deployment: two `mlcp serve` replicas and one `mlcp controller run`, as
processes on loopback with the demo's settings, and traffic that asks them for predictions.

    with Stage(settings, logs, window_s=1.0) as stage:     # started, ready, then stopped
        with Traffic(stage.urls, customers=5500) as traffic:
            stage.wait(lambda: stage.serves(champion=3), "churn@3 on both replicas")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import httpx

from controlplane.settings import Settings

MODEL = "churn"


def mlcp_executable() -> str:
    """The `mlcp` beside this interpreter (the virtual environment's), else on PATH."""
    beside = Path(sys.executable).with_name("mlcp")
    return str(beside) if beside.exists() else shutil.which("mlcp") or "mlcp"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives child processes exactly these settings (the stores, in
    local mode: the demo's processes work on them directly)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLCP_API_URL", "MLCP_TOKEN")}
    values = {
        f"MLCP_{key.upper()}": str(value)
        for key, value in settings.model_dump().items()
        if value is not None and key not in ("api_url", "token")
    }
    return {**env, **values}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """A started `mlcp` process, its log, and its URL when it serves."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text()[-n:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        """Signal it (SIGTERM: drain and exit) and wait; killed when it outstays ``timeout_s``."""
        if self.alive():
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)


class StageError(RuntimeError):
    """A demo process died or did not get ready; the message points at its log."""


class Stage:
    """Two replicas and a controller; ``wait()`` polls a condition with a deadline."""

    def __init__(
        self, settings: Settings, logs: Path, window_s: float = 1.0, interval_s: float = 1.0
    ) -> None:
        self.settings, self.logs = settings, logs
        self.window_s, self.interval_s = window_s, interval_s
        self.env = settings_env(settings)
        self.processes: list[Process] = []
        self._handles: list[IO[bytes]] = []

    @property
    def replicas(self) -> list[Process]:
        return [p for p in self.processes if p.url]

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.replicas]

    def _spawn(self, name: str, *argv: str, url: str = "") -> Process:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        handle = log.open("wb")
        self._handles.append(handle)
        popen = subprocess.Popen(
            [mlcp_executable(), *argv],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches the demo, which stops them
        )
        process = Process(name, popen, log, url)
        self.processes.append(process)
        return process

    def start(self, timeout_s: float = 300) -> None:
        for replica in ("demo-replica-a", "demo-replica-b"):
            port = free_port()
            self._spawn(
                replica, "serve", "--port", str(port), "--replica", replica, "--poll-s", "0.2",
                "--window-s", f"{self.window_s:g}", "--heartbeat-s", "0.5",
                url=f"http://127.0.0.1:{port}",
            )  # fmt: skip
        self.wait(lambda: all(self._ready(r) for r in self.replicas), "both replicas", timeout_s)
        self._spawn("demo-controller", "controller", "run", "--interval", f"{self.interval_s:g}s")

    def _ready(self, replica: Process) -> bool:
        try:
            return httpx.get(f"{replica.url}/v2/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def serving(self, replica: Process) -> dict[str, Any]:
        state = httpx.get(f"{replica.url}/v1/serving/state", timeout=5).json()
        return dict(state["deployments"].get(MODEL) or {})

    def serves(self, champion: int, challenger: int | None = None) -> bool:
        """Both replicas route ``MODEL`` to exactly this champion and challenger."""
        try:
            return all(
                (d := self.serving(r)).get("champion") == champion
                and d.get("challenger") == challenger
                for r in self.replicas
            )
        except httpx.HTTPError:
            return False

    def wait(self, condition: Callable[[], Any], what: str, timeout_s: float = 180) -> Any:
        """Poll ``condition`` until it holds; a dead process or the deadline raises."""
        end = time.monotonic() + timeout_s
        while True:
            for process in self.processes:
                if not process.alive():
                    raise StageError(f"{process.name} exited; see {process.log}")
            value = condition()
            if value:
                return value
            if time.monotonic() > end:
                raise StageError(f"gave up waiting for {what} after {timeout_s:g} s")
            threading.Event().wait(0.05)

    def stop(self) -> list[int]:
        """SIGTERM everything (replicas drain and report their last windows), then wait."""
        for process in reversed(self.processes):  # all at once: they drain in parallel
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)
        codes = [process.stop() for process in self.processes]
        for handle in self._handles:
            handle.close()
        return codes

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Traffic:
    """Threads asking the replicas for predictions of random customers, one to four per
    request, and counting the answers by version and status."""

    def __init__(self, urls: list[str], customers: int, threads: int = 3) -> None:
        self.urls, self.customers, self.threads = urls, customers, threads
        self.by_version: Counter[int] = Counter()
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []  # requests with no HTTP answer at all
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _run(self, seed: int) -> None:
        import random

        rng = random.Random(seed)
        clients = [httpx.Client(base_url=url, timeout=30) for url in self.urls]
        try:
            turn = seed
            while not self._stop.is_set():
                if not self._running.is_set():
                    self._running.wait(0.1)
                    continue
                turn += 1
                client = clients[turn % len(clients)]
                ids = [rng.randrange(self.customers) for _ in range(rng.randint(1, 4))]
                body = {"entities": [{"customer_id": i} for i in ids]}
                try:
                    r = client.post(f"/v1/models/{MODEL}/predict", json=body)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                versions = r.json().get("versions", []) if r.status_code == 200 else []
                with self._lock:
                    self.statuses[r.status_code] += 1
                    self.by_version.update(versions)
        finally:
            for client in clients:
                client.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No new requests while inside (requests in flight finish)."""
        self._running.clear()
        try:
            yield
        finally:
            self._running.set()

    @property
    def answered(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def __enter__(self) -> Self:
        self._workers = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)
