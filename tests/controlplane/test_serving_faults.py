"""`mlcp serve` under faults, on a PostgreSQL and a Redis these tests start and break
themselves (never the machine's shared ones): a frozen (SIGSTOP) and a stopped control-plane
database leave `/v1` on cached entities and `/v2` answering within a short deadline; with the
online store down, `/v2` and cached entities are answered (stale, and saying so) while an
uncached entity gets a clear 503; after recovery everything answers again."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from controlplane.context import ControlPlane
from controlplane.policy import Policy
from controlplane.serving import serving_windows
from controlplane.settings import Settings
from features import reference_statistics
from registry import RegistrationRequest
from tests.controlplane.test_serving_adapters import DAY, DEFS
from tests.serving.conftest import free_port
from tests.throwaway_redis import ThrowawayRedis
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

MLCP = str(Path(sys.executable).with_name("mlcp"))
# Short enough that a request held by the database would fail; the replica's own deadline.
DEADLINE = {"X-Request-Timeout-Ms": "3000"}
CACHED = [{"user_id": 0}, {"user_id": 1}]


class Postgres:
    """A throwaway PostgreSQL cluster in a temp dir on a free port, run as user postgres."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not binaries or shutil.which("runuser") is None:
            pytest.skip("needs PostgreSQL's server binaries and runuser")
        self.bin = Path(binaries[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="mlcp-pg-"))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(self.bin / "initdb", "-D", self.dir / "data", "-A", "trust", "-U",
                          "postgres", "--no-sync")  # fmt: skip
        self.start()

    def _as_postgres(self, *argv: object) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(self.bin / "pg_ctl", "-D", self.dir / "data", "-o", options, "-l",
                          self.dir / "log", "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, background workers)."""
        postmaster = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def signal(self, pids: list[int], signum: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Replica:
    url: str
    cp: ControlPlane
    pg: Postgres
    redis: ThrowawayRedis
    name: str
    log: Path
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store: tuple[str, str]
) -> Iterator[Replica]:
    work = tmp_path_factory.mktemp("faults")
    pg, redis = Postgres(), ThrowawayRedis(keep_data=True)
    redis.start()
    tracking, artifacts = mlflow_store
    settings = Settings(
        home=work / ".mlcp",
        database_url=pg.url,
        mlflow_tracking_uri=tracking,
        artifact_root=artifacts,
        feast_online_store=redis.url,
        actor="ci",
        db_connect_timeout_s=2,
    )
    (work / "defs.py").write_text(DEFS)
    pd.DataFrame(
        {"user_id": np.arange(6, dtype=np.int64), "spend": np.float32([10.0, 20, 30, 40, 50, 60]),
         "visits": np.arange(6, dtype=np.int64) * 2, "event_timestamp": [DAY] * 6}
    ).to_parquet(work / "user_stats.parquet", index=False)  # fmt: skip
    name = f"faults_{os.getpid()}"
    cp = ControlPlane(settings)
    cp.features.apply(work / "defs.py", actor="ci")
    cp.features.materialize("user_stats@1", DAY - timedelta(days=1), DAY + timedelta(1), "ci")
    x = np.random.default_rng(0).random((8, 2), dtype=np.float32)
    net = __import__("torch").nn.Linear(2, 1).eval()
    cp.registry.register(
        RegistrationRequest(
            name=name,
            model=net,
            input_example=x,
            feature_service="user_features@1",
            reference_stats=reference_statistics(pd.DataFrame(x, columns=["spend", "visits"])),
        )
    )
    cp.policies.set(name, Policy.from_yaml("gates: {drift_reference: true}"), "admin")
    assert cp.promotions.promote(f"{name}@1", "ci").outcome == "promoted"

    port = free_port()
    env = {
        **os.environ,
        "MLCP_HOME": str(settings.home),
        "MLCP_DATABASE_URL": pg.url,
        "MLCP_MLFLOW_TRACKING_URI": tracking,
        "MLCP_ARTIFACT_ROOT": artifacts,
        "MLCP_FEAST_ONLINE_STORE": redis.url,
        "MLCP_DB_CONNECT_TIMEOUT_S": "2",
    }
    argv = [MLCP, "serve", "--port", str(port), "--poll-s", "30", "--window-s", "1"]
    log = work / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{url}/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, what="mlcp serve to be ready")
        yield Replica(url, cp, pg, redis, name, log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        cp.close()
        pg.close()
        redis.close()


def calls(replica: Replica, client: httpx.Client, uncached: int) -> dict[str, httpx.Response]:
    """One of each: /v2 tensors, /v1 cached entities, /v1 an entity not cached before."""
    infer = {"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32",
                         "data": [1, 2, 3, 4]}]}  # fmt: skip
    path = f"/v1/models/{replica.name}/predict"
    return {
        "v2": client.post(f"/v2/models/{replica.name}/infer", json=infer, headers=DEADLINE),
        "cached": client.post(path, json={"entities": CACHED}, headers=DEADLINE),
        "uncached": client.post(path, json={"entities": [{"user_id": uncached}]}, headers=DEADLINE),
    }


def test_a_frozen_and_a_stopped_database_leave_inference_untouched(replica: Replica) -> None:
    uncached = 2
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        path = f"/v1/models/{replica.name}/predict"
        assert client.post(path, json={"entities": CACHED}).status_code == 200  # now cached
        pids = replica.pg.pids()
        began = datetime.now(UTC)
        replica.pg.signal(pids, signal.SIGSTOP)
        try:
            for _ in range(10):  # a few seconds: generation checks and window reports hang
                answers = calls(replica, client, uncached)
                assert answers["v2"].status_code == 200, answers["v2"].text
                assert answers["cached"].status_code == 200, answers["cached"].text
                threading.Event().wait(0.3)
        finally:
            replica.pg.signal(pids, signal.SIGCONT)
        replica.pg.stop()
        try:
            for _ in range(10):
                answers = calls(replica, client, uncached)
                assert answers["v2"].status_code == 200, answers["v2"].text
                assert answers["cached"].status_code == 200, answers["cached"].text
                threading.Event().wait(0.3)
        finally:
            replica.pg.start()
        replica.outages.append((began, datetime.now(UTC)))
        answers = calls(replica, client, uncached)
        assert {k: r.status_code for k, r in answers.items()} == {
            "v2": 200, "cached": 200, "uncached": 200
        }  # fmt: skip


def test_an_online_store_outage_fails_only_uncached_entities(replica: Replica) -> None:
    uncached = 3  # never asked for before the outage
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        path = f"/v1/models/{replica.name}/predict"
        assert client.post(path, json={"entities": CACHED}).status_code == 200
        replica.redis.stop()
        try:
            for _ in range(5):
                answers = calls(replica, client, uncached)
                assert answers["v2"].status_code == 200, answers["v2"].text
                assert answers["cached"].status_code == 200, answers["cached"].text
                assert answers["uncached"].status_code == 503, answers["uncached"].text
                assert "online store" in answers["uncached"].json()["error"]
                threading.Event().wait(0.2)
        finally:
            replica.redis.start()

        def recovered() -> bool:
            answers = calls(replica, client, uncached)
            return all(r.status_code == 200 for r in answers.values())

        wait_until(recovered, 60, "every request to be answered after Redis is back")
        metrics = client.get("/metrics").text
    assert "mlcp_feature_cache_hits_total" in metrics  # the feature client's series are here
    log = replica.log.read_text()
    # Misses are read directly from Redis (DirectOnlineBackend, features/online_direct.py).
    assert log.count("the online store (DirectOnlineBackend) is unavailable") == 1, log[-3000:]
    assert log.count("the online store (DirectOnlineBackend) is back") == 1, log[-3000:]


def test_the_windows_of_a_database_outage_arrive_after_it(replica: Replica) -> None:
    assert replica.outages, "runs after the database outage test"
    began, ended = replica.outages[0]

    def during() -> list[dict[str, Any]]:
        windows = serving_windows(replica.cp.sessions, replica.name, limit=1000)
        return [
            w for w in windows
            if began <= datetime.fromisoformat(w["ended_at"]) <= ended and w["requests"]
        ]  # fmt: skip

    wait_until(during, 15, "windows cut during the outage")
