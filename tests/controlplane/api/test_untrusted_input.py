"""The control API as an attacker with a token meets it: every case of issue 10 answers a
4xx ``{"error": {...}}`` (never a 5xx), the token is checked before the body is read, and a
model upload can't run code on the server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from controlplane.api.app import create_app
from controlplane.context import ControlPlane
from tests.registry import crafted

BIG = 2**63  # the smallest integer past int64: an OverflowError from the database before


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, mlflow_store: tuple[str, str]) -> Iterator[Any]:
    from controlplane.settings import Settings

    uri, artifacts = mlflow_store
    home = tmp_path_factory.mktemp("untrusted")
    (home / "data").mkdir()
    settings = Settings(
        home=home / ".mlcp",
        mlflow_tracking_uri=uri,
        artifact_root=artifacts,
        actor="tester",
        api_data_root=home / "data",
    )
    with ControlPlane(settings) as cp:
        yield cp


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[TestClient]:
    with TestClient(create_app(plane)) as c:
        yield c


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> dict[str, str]:
    return {"Authorization": f"Bearer {plane.tokens.create('attacker', 'admin', 'test')[1]}"}


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


@pytest.fixture(scope="module")
def good() -> bytes:
    return crafted.exported_archive()


@pytest.mark.parametrize("kind", sorted(crafted.HOSTILE))
def test_a_hostile_upload_is_refused_and_its_payload_never_runs(
    client, admin, good: bytes, tmp_path: Path, kind: str
) -> None:
    # The exploit answered 422 after the file had been written.
    marker = tmp_path / "pwned"
    archive = crafted.HOSTILE[kind](good, marker)
    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    body = {"model_pt2_base64": base64.b64encode(archive).decode(), "input_example": x.tolist()}
    error = error_of(client.post("/v1/models/victim/versions", json=body, headers=admin), 422)
    assert error["type"] == "UnsafeModel"
    assert not marker.exists()


def test_a_hostile_upload_is_refused_by_the_registration_route(
    client, admin, good: bytes, tmp_path: Path
) -> None:
    import hashlib

    marker = tmp_path / "pwned"
    archive = crafted.pickled_weight(good, marker)
    digest = hashlib.sha256(archive).hexdigest()
    assert client.put(f"/v1/uploads/{digest}/m.pt2", content=archive, headers=admin).is_success
    x = np.ones((3, 4), dtype=np.float32)
    npy = __import__("io").BytesIO()
    np.save(npy, x)
    example = hashlib.sha256(npy.getvalue()).hexdigest()
    client.put(f"/v1/uploads/{example}/x.npy", content=npy.getvalue(), headers=admin)
    body = {"name": "victim", "model": f"{digest}/m.pt2", "input_example": f"{example}/x.npy"}
    error = error_of(client.post("/v1/registrations", json=body, headers=admin), 422)
    assert "use_pickle" in error["message"]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind"),
    [
        ("POST", "/v1/models/m/versions", {"model_pt2_base64": "\u00e9",
                                           "input_example": [[1.0], [2.0]]}, 422, "InvalidModel"),
        ("GET", f"/v1/models/m/versions/{BIG}", None, 422, "InvalidModelRef"),
        ("GET", f"/v1/models/m/versions/{BIG}/lineage", None, 422, "InvalidModelRef"),
        ("GET", "/v1/models/m/versions/%C2%B3", None, 422, "InvalidModelRef"),
        ("POST", f"/v1/models/m/versions/{BIG}/promote", {}, 422, "InvalidModelRef"),
        ("POST", "/v1/models/m/shadow", {"version": BIG}, 422, "InvalidRequest"),
        ("POST", "/v1/models/m/rollback", {"to": BIG, "reason": "r"}, 422, "InvalidRequest"),
        ("GET", f"/v1/models/m/windows?version={BIG}", None, 422, "InvalidRequest"),
        ("DELETE", f"/v1/tokens/{BIG}", None, 422, "InvalidRequest"),
        ("POST", "/v1/models/m/versions", {"model_pt2_base64": "eA==", "metrics": {"a": 1},
                                           "input_example": [[1.0], [2.0]],
                                           "training_data": {"fingerprint": "abcdefgh",
                                                             "rows": BIG}}, 422, "InvalidRequest"),
        ("GET", "/v1/nosuch", None, 404, "HTTPError"),
        ("PATCH", "/v1/models", None, 405, "HTTPError"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_with_the_error_shape(
    client, admin, method: str, path: str, body: Any, status: int, kind: str
) -> None:
    response = client.request(method, path, json=body, headers=admin)
    assert error_of(response, status)["type"] == kind


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_policy_threshold_must_be_finite(client, admin, literal: str) -> None:
    raw = '{"gates": {"metrics": [{"metric": "auc", "min": LITERAL}]}}'.replace("LITERAL", literal)
    headers = {**admin, "content-type": "application/json"}
    response = client.put("/v1/models/m/policy", content=raw, headers=headers)
    assert "finite number" in error_of(response, 422)["message"]


def test_an_empty_policy_needs_acknowledgement(client, admin) -> None:
    # It once silently removed every gate.
    assert "names no gate" in error_of(client.put("/v1/models/e/policy", json={}, headers=admin),
                                       422)["message"]  # fmt: skip
    ok = client.put("/v1/models/e/policy", json={"gates": {"none": True}}, headers=admin)
    assert ok.status_code == 200, ok.text


def test_the_token_is_checked_before_the_body_is_read(client) -> None:
    # A broken body without a token once got 422 (the body was parsed first).
    response = client.post("/v1/tokens", content=b"{not json", headers={"content-type": "x"})
    assert error_of(response, 401)["message"].startswith("send a token")
    bad = client.post("/v1/tokens", content=b"{", headers={"Authorization": "Bearer mlcp_x"})
    assert error_of(bad, 401)["message"] == "unknown or revoked token"


def test_bodies_are_bounded(client, admin) -> None:
    # A 10 MB policy with 400,000 gates was accepted.
    gates = [{"metric": f"m{i}", "min": 0.5} for i in range(400_000)]
    raw = json.dumps({"gates": {"metrics": gates}}).encode()
    assert len(raw) > 10_000_000
    response = client.put("/v1/models/m/policy", content=raw, headers=admin)
    assert "MLCP_API_MAX_BODY_KB" in error_of(response, 413)["message"]


def test_evaluate_reads_only_under_the_data_root(client, admin, plane, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    pd.DataFrame({"password": ["hunter2"], "label": [1]}).to_csv(secret, index=False)
    url = "/v1/models/m/versions/1/evaluate"
    for given in (str(secret), "../secret.csv", f"../../{secret}"):
        error = error_of(client.post(url, json={"data_path": given, "label": "x"},
                                     headers=admin), 422)  # fmt: skip
        assert error["type"] == "InvalidDataPath"
        assert "password" not in error["message"]
        assert "hunter2" not in error["message"]


def test_evaluate_errors_do_not_echo_the_file(client, admin, plane) -> None:
    root = plane.settings.api_data_root
    pd.DataFrame({"password": ["hunter2"] * 3, "y": [1, 0, 1]}).to_csv(root / "t.csv", index=False)
    (root / "junk.parquet").write_text("password,hunter2\n")
    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    body = {"model_pt2_base64": base64.b64encode(crafted.exported_archive()).decode(),
            "input_example": x.tolist(), "input_names": ["a", "b", "c", "d"]}  # fmt: skip
    assert client.post("/v1/models/ev/versions", json=body, headers=admin).status_code == 201
    for name in ("t.csv", "junk.parquet"):
        body = {"data_path": name, "label": "label"}
        response = client.post("/v1/models/ev/versions/1/evaluate", json=body, headers=admin)
        message = error_of(response, 422)["message"]
        assert "password" not in message
        assert "hunter2" not in message


def test_openapi_lists_every_status_with_the_real_error_schema(client) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Error"]["properties"]["error"]["$ref"] == "#/components/schemas/ErrorDetail"
    policy = doc["paths"]["/v1/models/{name}/policy"]["put"]["responses"]
    assert {"200", "401", "403", "413", "422", "503"} <= set(policy)
    for code in ("401", "422"):
        schema = policy[code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
