"""A rehearsal of deploy/k8s without Kubernetes: every process the manifests start runs here,
on loopback, with the manifests' own commands, settings and secrets (made by
create-secrets.sh), only hosts and ports mapped: a PostgreSQL with password auth and the
databases the postgres ConfigMap creates, a Redis with the StatefulSet's arguments, an
S3-compatible endpoint (moto's server standing in for MinIO), the bucket Job, MLflow's server,
the migrations Job, the schema wait, the control API, a serving replica and two controllers.
Then a version registered and promoted through the API is served, its artifacts land in the
bucket, one controller leads while the other stands by and takes over, and serving stops
cleanly on SIGTERM within its grace period."""

from __future__ import annotations

import base64
import glob
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from tests.deploy.manifests import (
    Container,
    config_maps,
    containers_of,
    environment,
    find,
    option,
    pod_spec,
    run_create_secrets,
    running,
)
from tests.serving.conftest import free_port
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BIN = Path(sys.executable).parent
STANDBY_METRICS = -9400  # key in Stack.ports for the second controller's metrics port


@dataclass
class Stack:
    """The rehearsed deployment: where each piece listens, and the processes to stop."""

    tmp: Path
    secrets: dict[str, dict[str, str]]
    hosts: dict[str, str] = field(default_factory=dict)  # service host:port -> loopback
    ports: dict[int, int] = field(default_factory=dict)  # container port -> free port
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, io.BufferedWriter] = field(default_factory=dict)

    def localize(self, value: str, home: Path) -> str:
        for service, local in self.hosts.items():
            value = value.replace(service, local)
        return value.replace("/home/mlcp", str(home)).replace("0.0.0.0", "127.0.0.1")

    def argv(self, c: Container, home: Path, ports: dict[int, int] | None = None) -> list[str]:
        ports = {**self.ports, **(ports or {})}
        argv = [self.localize(a, home) for a in c.argv]
        if option(argv, "--workers") is not None:
            # The cluster's MLflow runs two workers; one spares this 2-core machine an import.
            argv[argv.index("--workers") + 1] = "1"
        for flag in ("--port", "--metrics-port"):
            value = option(argv, flag)
            if value is not None:
                argv[argv.index(flag) + 1] = str(ports[int(value)])
        return argv

    def env(self, c: Container, home: Path) -> dict[str, str]:
        env = {k: self.localize(v, home) for k, v in environment(c, self.secrets).items()}
        base = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(home), "LANG": "C.UTF-8"}
        quiet = {"GX_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        return {**base, **quiet, **env}

    def home(self, name: str) -> Path:
        home = self.tmp / "pods" / name
        home.mkdir(parents=True, exist_ok=True)
        return home

    def run(self, c: Container, name: str) -> subprocess.CompletedProcess[str]:
        home = self.home(name)
        return subprocess.run(
            self.argv(c, home), env=self.env(c, home), cwd=home, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip

    def start(self, c: Container, name: str, ports: dict[int, int] | None = None) -> None:
        home = self.home(name)
        self.spawn(name, self.argv(c, home, ports), env=self.env(c, home), cwd=home)

    def spawn(self, name: str, argv: list[str], **kwargs: Any) -> None:
        self.logs[name] = log = (self.tmp / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, **kwargs
        )

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def url(self, container_port: int) -> str:
        return f"http://127.0.0.1:{self.ports[container_port]}"

    def wait_http(self, name: str, url: str, timeout_s: float = 180) -> None:
        def up() -> bool:
            process = self.processes.get(name)
            assert process is None or process.poll() is None, f"{name} exited:\n{self.log(name)}"
            try:
                return httpx.get(url, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout_s, f"{name} at {url}", poll_s=0.2)

    def stop(self, name: str, timeout_s: float = 60) -> int:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # what the kubelet sends, to our own process
        try:
            return process.wait(timeout_s)
        finally:
            self.logs[name].close()


class PasswordPostgres:
    """A throwaway PostgreSQL whose superuser is the manifests' (mlcp, with the secret's
    password, scram auth), holding the databases the StatefulSet's init script creates."""

    def __init__(self, user: str, password: str) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not binaries or shutil.which("runuser") is None:
            pytest.skip("needs PostgreSQL's server binaries and runuser")
        self.bin = Path(binaries[-1])
        # Not under pytest's tmp_path: its 0700 parents would keep the postgres user out.
        self.dir = Path(tempfile.mkdtemp(prefix="mlcp-rehearsal-pg-"))
        (self.dir / "pw").write_text(password)
        shutil.chown(self.dir, "postgres")
        shutil.chown(self.dir / "pw", "postgres")
        self.port = free_port()
        self._as_postgres("initdb", "-D", self.dir / "data", "-U", user, "-A", "scram-sha-256",
                          f"--pwfile={self.dir / 'pw'}", "--no-sync")  # fmt: skip
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres("pg_ctl", "-D", self.dir / "data", "-o", options, "-l",
                          self.dir / "log", "-w", "start")  # fmt: skip

    def _as_postgres(self, program: str, *argv: object) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / program), *map(str, argv)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]

    def close(self) -> None:
        try:
            self._as_postgres("pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _init_databases(port: int, user: str, password: str, database: str) -> None:
    import psycopg

    url = f"postgresql://{user}:{password}@127.0.0.1:{port}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')  # the image's POSTGRES_DB
    script = config_maps()["mlcp-postgres-init"]["databases.sql"]
    url = f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}"
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, script.split(";")):
            conn.execute(statement)


def _env_of(spec: dict[str, Any], name: str) -> str:
    return next(str(v["value"]) for v in spec["env"] if v["name"] == name)


def _start_redis(stack: Stack) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    (spec,) = pod_spec(find("StatefulSet", "mlcp-redis"))["containers"]
    password = stack.secrets["mlcp-redis"]["password"]
    args = [a.replace("$(REDIS_PASSWORD)", password) for a in spec["args"]]
    port = free_port()
    data = stack.tmp / "redis"
    data.mkdir()
    stack.spawn(
        "redis",
        ["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)],
    )
    stack.hosts["mlcp-redis:6379"] = f"127.0.0.1:{port}"

    import redis

    client = redis.Redis(port=port, password=password, socket_connect_timeout=1)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(pings, 30, "redis-server to start")
    client.close()


@pytest.fixture(scope="module", autouse=True)
def _quiet_moto() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every call


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from moto.server import ThreadedMotoServer

    tmp = tmp_path_factory.mktemp("rehearsal")
    stack = Stack(tmp, run_create_secrets(tmp))
    postgres = find("StatefulSet", "mlcp-postgres")
    (pg_spec,) = pod_spec(postgres)["containers"]
    user, database = _env_of(pg_spec, "POSTGRES_USER"), _env_of(pg_spec, "POSTGRES_DB")
    password = stack.secrets["mlcp-postgres"]["password"]
    pg = PasswordPostgres(user, password)
    s3_port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    try:
        _init_databases(pg.port, user, password, database)
        stack.hosts["mlcp-postgres:5432"] = f"127.0.0.1:{pg.port}"
        _start_redis(stack)
        s3.start()
        stack.hosts["mlcp-minio:9000"] = f"127.0.0.1:{s3_port}"
        stack.ports = {p: free_port() for p in (5000, 8000, 8080, 9400)}
        stack.hosts["mlcp-mlflow:5000"] = f"127.0.0.1:{stack.ports[5000]}"
        yield stack
    finally:
        for name in reversed(list(stack.processes)):
            try:
                stack.stop(name)
            except subprocess.TimeoutExpired:
                stack.processes[name].kill()  # ours, by its pid
                stack.processes[name].wait(30)
        s3.stop()
        pg.close()


@pytest.fixture(scope="module")
def started(stack: Stack) -> Stack:
    """The bucket and migration Jobs run, then every server starts and answers its probes."""
    (bucket,) = _containers("Job", "mlcp-minio-bucket")
    done = stack.run(bucket, "bucket")
    assert done.returncode == 0, done.stderr
    assert "bucket mlflow created" in done.stdout
    (mlflow,) = _containers("Deployment", "mlcp-mlflow")
    stack.start(mlflow, "mlflow")
    (migrate,) = _containers("Job", "mlcp-db-upgrade")
    done = stack.run(migrate, "migrate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("at revision")
    serve = running("serve")
    (wait,) = [c for c in _containers("Deployment", "mlcp-serving") if c.init]
    done = stack.run(wait, "wait-for-schema")  # returns at once: the schema is current
    assert done.returncode == 0, done.stdout + done.stderr
    stack.wait_http("mlflow", f"{stack.url(5000)}/health")
    stack.start(running("api"), "api")
    stack.start(serve, "serve")
    controller = running("controller", "run")
    stack.start(controller, "controller-0")
    standby_port = free_port()  # the second replica's metrics port (its own pod's 9400)
    stack.start(controller, "controller-1", ports={9400: standby_port})
    stack.ports[STANDBY_METRICS] = standby_port
    return stack


def _containers(kind: str, name: str) -> list[Container]:
    return containers_of(find(kind, name))


def _probe_urls(c: Container, port_of: dict[int, int]) -> list[str]:
    urls = []
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.spec.get(kind, {}).get("httpGet")
        if probe:
            urls.append(f"http://127.0.0.1:{port_of[c.port(probe['port'])]}{probe['path']}")
    return urls


def test_every_server_answers_its_probes(started: Stack) -> None:
    ports, controller = started.ports, running("controller", "run")
    checks = {
        "mlflow": _probe_urls(_containers("Deployment", "mlcp-mlflow")[0], ports),
        "api": _probe_urls(running("api"), ports),
        "serve": _probe_urls(running("serve"), ports),
        "controller-0": _probe_urls(controller, ports),
        "controller-1": _probe_urls(controller, {9400: ports[STANDBY_METRICS]}),
    }
    for name, urls in checks.items():
        assert urls, name
        for url in urls:
            started.wait_http(name, url)


def test_mlflow_accepts_its_service_name_and_refuses_other_hosts(started: Stack) -> None:
    url = f"{started.url(5000)}/api/2.0/mlflow/experiments/search?max_results=1"
    ours = httpx.get(url, headers={"Host": "mlcp-mlflow:5000"}, timeout=30)
    long_name = httpx.get(url, headers={"Host": "mlcp-mlflow.mlcp.svc.cluster.local:5000"})
    other = httpx.get(url, headers={"Host": "attacker.example:5000"}, timeout=30)
    assert ours.status_code == 200, ours.text
    assert long_name.status_code == 200, long_name.text
    assert other.status_code == 403


def _admin_token(stack: Stack) -> str:
    """`kubectl exec deploy/mlcp-api -- mlcp tokens create ...`, as docs/production.md says."""
    api = running("api")
    command = ["mlcp", "tokens", "create", "ci", "--role", "admin"]
    done = stack.run(
        Container(api.workload, api.pod, {**api.spec, "command": command}, False), "exec"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _exported_b64(width: int) -> tuple[str, np.ndarray]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(width, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x = np.random.default_rng(0).random((4, width), dtype=np.float32)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(net.eval(), (torch.from_numpy(x),), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return base64.b64encode(buffer.getvalue()).decode(), x


def test_a_version_promoted_through_the_api_is_served_with_artifacts_in_the_bucket(
    started: Stack,
) -> None:
    import boto3

    token = _admin_token(started)
    archive, x = _exported_b64(4)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=started.url(8080), headers=headers, timeout=120) as api:
        registered = api.post(
            "/v1/models/credit/versions",
            json={"model_pt2_base64": archive, "input_example": x.tolist()},
        )
        assert registered.status_code == 201, registered.text
        policy = {"gates": {"schema": {"inputs": [{"dtype": "float32", "shape": [-1, 4]}]}}}
        assert api.put("/v1/models/credit/policy", json=policy).status_code == 200
        promoted = api.post("/v1/models/credit/versions/1/promote", json={})
        assert promoted.status_code == 200, promoted.text

    serving = started.url(8000)
    started.wait_http("serve", f"{serving}/v2/models/credit/ready", 120)
    body = {"inputs": [{"name": "input", "shape": [4, 4], "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}  # fmt: skip
    answer = httpx.post(f"{serving}/v2/models/credit/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["outputs"][0]["data"]) == 4

    mlflow = _containers("Deployment", "mlcp-mlflow")[0]
    env = started.env(mlflow, started.home("mlflow"))
    s3 = boto3.client(
        "s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    listed = s3.list_objects_v2(Bucket="mlflow", Prefix="artifacts/mlcp/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith("MLmodel") for k in keys), keys
    assert not list((started.tmp / "pods").rglob("MLmodel")), "artifacts landed on a pod's disk"


def _leading(port: int) -> bool:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    match = re.search(r"^mlcp_controller_leader (\S+)$", text, re.M)
    return match is not None and float(match.group(1)) == 1.0


def test_one_controller_leads_and_the_standby_takes_over(started: Stack) -> None:
    ports = {"controller-0": started.ports[9400], "controller-1": started.ports[STANDBY_METRICS]}

    def one_leader() -> str | None:
        leaders = [name for name, port in ports.items() if _leading(port)]
        assert len(leaders) <= 1, leaders
        return leaders[0] if leaders else None

    leader = wait_until(one_leader, 60, "a controller to lead", poll_s=0.2)
    standby = next(name for name in ports if name != leader)
    assert not _leading(ports[standby])
    assert started.stop(leader, 30) == 0, started.log(leader)  # exit 0: the lock released
    wait_until(lambda: _leading(ports[standby]), 60, "the standby to take over")


def test_serving_stops_cleanly_within_its_grace_period(started: Stack) -> None:
    grace = running("serve").pod["terminationGracePeriodSeconds"]
    # The kubelet kills a pod still running after its grace period; exit 0 is a clean drain.
    assert started.stop("serve", grace) == 0, started.log("serve")
