"""`mlcp api` as an operator runs it: a real uvicorn on loopback, tokens from the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MLCP = str(Path(sys.executable).parent / "mlcp")
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, mlflow_store: tuple[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    env |= {"MLCP_HOME": str(tmp_path / ".mlcp"), "MLCP_MLFLOW_TRACKING_URI": mlflow_store[0]}
    port = free_port()
    log = tmp_path / "api.log"
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with (
        log.open("w") as sink,
        subprocess.Popen(
            [MLCP, "api", "--port", str(port)], env=env, stdout=sink, stderr=sink
        ) as proc,
    ):
        try:
            while True:  # poll until the server answers, within a deadline
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "mlcp api did not answer within 60 s"
                time.sleep(0.1)
            yield base, env
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def token(env: dict[str, str], role: str) -> str:
    done = subprocess.run(
        [MLCP, "tokens", "create", f"e2e-{role}", "--role", role, "--json"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return str(json.loads(done.stdout)["token"])


def test_api_on_loopback_enforces_tokens_and_roles(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    viewer = {"Authorization": f"Bearer {token(env, 'viewer')}"}
    assert httpx.get(f"{base}/v1/models").status_code == 401
    listed = httpx.get(f"{base}/v1/models", headers=viewer)
    assert (listed.status_code, listed.json()) == (200, [])
    denied = httpx.post(f"{base}/v1/tokens", json={"name": "x", "role": "admin"}, headers=viewer)
    assert denied.status_code == 403
    assert denied.json()["error"]["message"] == "role 'viewer' may not tokens"
    spec = httpx.get(f"{base}/openapi.json").json()
    assert "/v1/models/{name}/versions/{version}/promote" in spec["paths"]
