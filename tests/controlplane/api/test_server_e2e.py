"""`mlcp api` as an operator runs it: a real uvicorn on loopback, tokens from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.controlplane.api.servers import MLCP, api_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path, mlflow_store: tuple[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    env |= {"MLCP_HOME": str(tmp_path / ".mlcp"), "MLCP_MLFLOW_TRACKING_URI": mlflow_store[0]}
    with api_server(env, tmp_path / "api.log") as base:
        yield base, env


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
