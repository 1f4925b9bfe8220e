"""Uploads and the work done on them: content-checked, bounded, behind a token; a model
upload must be a torch.export program (a pickle is refused and never loaded)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from controlplane.api.app import create_app
from controlplane.context import ControlPlane
from controlplane.uploads import UploadStore, upload_name
from registry.archive import export_archive
from tests.conftest import make_net


@pytest.fixture
def client(cp: ControlPlane) -> Iterator[TestClient]:
    with TestClient(create_app(cp)) as c:
        yield c


@pytest.fixture
def auth(cp: ControlPlane) -> dict[str, dict[str, str]]:
    return {
        role: {"Authorization": f"Bearer {cp.tokens.create(f'u-{role}', role, 'test')[1]}"}
        for role in ("viewer", "promoter")
    }


def put(client: TestClient, headers: dict[str, str], data: bytes, name: str) -> tuple[int, str]:
    sha = hashlib.sha256(data).hexdigest()
    response = client.put(f"/v1/uploads/{sha}/{name}", content=data, headers=headers)
    return response.status_code, f"{sha}/{name}"


def test_an_upload_lands_once_and_is_found_by_id(client, auth, cp: ControlPlane) -> None:
    status, upload = put(client, auth["promoter"], b"a,b\n1,2\n", "eval.csv")
    assert status == 201
    assert client.head(f"/v1/uploads/{upload}", headers=auth["promoter"]).status_code == 200
    assert put(client, auth["promoter"], b"a,b\n1,2\n", "eval.csv")[0] == 201  # idempotent
    store = UploadStore(cp.settings.home / "uploads", 1 << 20)
    assert store.path(upload).read_bytes() == b"a,b\n1,2\n"


def test_content_that_does_not_match_its_digest_is_not_kept(client, auth) -> None:
    sha = hashlib.sha256(b"what was hashed").hexdigest()
    response = client.put(f"/v1/uploads/{sha}/x.csv", content=b"other", headers=auth["promoter"])
    assert response.status_code == 422
    assert "hashes to" in response.json()["error"]["message"]
    assert client.head(f"/v1/uploads/{sha}/x.csv", headers=auth["promoter"]).status_code == 404


@pytest.mark.parametrize(
    ("name", "problem"), [("x.exe", "unsupported file type"), (".hidden.csv", "letters")]
)
def test_bad_upload_names_are_refused(client, auth, name: str, problem: str) -> None:
    status = client.put(f"/v1/uploads/{'0' * 64}/{name}", content=b"", headers=auth["promoter"])
    assert status.status_code == 422
    assert problem in status.json()["error"]["message"]


def test_uploads_are_bounded(cp: ControlPlane, auth) -> None:
    small = ControlPlane(cp.settings.model_copy(update={"api_max_upload_mb": 1}))
    with small, TestClient(create_app(small)) as client:
        status, _ = put(client, auth["promoter"], b"x" * ((1 << 20) + 1), "big.csv")
    assert status == 422


def test_a_viewer_may_not_upload(client, auth) -> None:
    assert put(client, auth["viewer"], b"1", "a.csv")[0] == 403
    assert put(client, {}, b"1", "a.csv")[0] == 401


def test_a_pickled_model_is_refused_by_the_registration_route(client, auth) -> None:
    buffer = io.BytesIO()
    torch.save(make_net(), buffer)  # a pickle: loading it would run code
    x = io.BytesIO()
    np.save(x, np.ones((3, 4), dtype=np.float32))
    _, model = put(client, auth["promoter"], buffer.getvalue(), "model.pt2")
    _, example = put(client, auth["promoter"], x.getvalue(), "x.npy")

    response = client.post(
        "/v1/registrations",
        json={"name": "churn", "model": model, "input_example": example},
        headers=auth["promoter"],
    )

    assert response.status_code == 422
    assert "only torch.export programs" in response.json()["error"]["message"]


def test_registration_from_uploads_names_the_token_owner(client, auth, model_name) -> None:
    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    npy = io.BytesIO()
    np.save(npy, x)
    _, model = put(client, auth["promoter"], export_archive(make_net(), x), "model.pt2")
    _, example = put(client, auth["promoter"], npy.getvalue(), "x.npy")
    body = {"name": model_name, "model": model, "input_example": example, "params": {"lr": "1"}}

    response = client.post("/v1/registrations", json=body, headers=auth["promoter"])

    assert response.status_code == 201, response.text
    assert response.json()["registered_by"] == "token:u-promoter"
    missing = {**body, "model": f"{'1' * 64}/model.pt2"}
    refused = client.post("/v1/registrations", json=missing, headers=auth["promoter"])
    assert refused.status_code == 422
    assert "not uploaded" in refused.json()["error"]["message"]


def test_upload_names_keep_the_suffix() -> None:
    assert upload_name("/data/My Eval (2).parquet") == "My_Eval__2_.parquet"
