"""Every route that changes state is closed to nobody and to viewers; errors are JSON 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from controlplane.api.app import create_app
from controlplane.context import ControlPlane

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def client(cp: ControlPlane) -> Iterator[TestClient]:
    with TestClient(create_app(cp)) as c:
        yield c


@pytest.fixture
def tokens(cp: ControlPlane) -> dict[str, str]:
    return {role: cp.tokens.create(f"t-{role}", role, "test")[1] for role in
            ("viewer", "data-scientist", "promoter", "admin")}  # fmt: skip


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def routes(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, concrete path, permission) for every API route."""
    out = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or route.path == "/healthz":
            continue
        path = (
            route.path.replace("{name}", "churn")
            .replace("{version}", "1")
            .replace("{token_id}", "1")
        )
        permission = next(
            (getattr(d.call, "permission", None) for d in route.dependant.dependencies
             if getattr(d.call, "permission", None)), None,
        )  # fmt: skip
        out.extend((method, path, permission or "") for method in route.methods)
    return out


def test_every_route_but_health_needs_a_token(client: TestClient) -> None:
    found = routes(client)
    assert len(found) >= 14
    for method, path, permission in found:
        assert permission, f"{method} {path} has no role check"
        response = client.request(method, path, json={})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["message"].startswith("send a token")
    assert client.get("/healthz").status_code == 200


def test_no_state_change_is_open_to_a_viewer(client: TestClient, tokens: dict[str, str]) -> None:
    writes = [(m, p, perm) for m, p, perm in routes(client) if m in WRITES]
    assert writes
    for method, path, permission in writes:
        assert permission != "read", f"{method} {path} only needs read"
        response = client.request(method, path, json={}, headers=auth(tokens["viewer"]))
        assert response.status_code == 403, (method, path, response.text)


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        ("promoter", "PUT", "/v1/models/churn/policy", False),
        ("data-scientist", "POST", "/v1/models/churn/versions/1/promote", False),
        ("promoter", "POST", "/v1/tokens", False),
        ("data-scientist", "POST", "/v1/models/churn/versions/1/evaluate", True),
        ("admin", "PUT", "/v1/models/churn/policy", True),
    ],
)
def test_roles_split_the_writes(client, tokens, role, method, path, allowed) -> None:
    response = client.request(method, path, json={}, headers=auth(tokens[role]))
    assert (response.status_code != 403) is allowed, response.text


def test_revoked_or_unknown_token_is_401(client: TestClient, cp: ControlPlane) -> None:
    token_id, token = cp.tokens.create("short-lived", "viewer", "test")
    assert client.get("/v1/models", headers=auth(token)).status_code == 200
    cp.tokens.revoke(token_id, "test")
    assert client.get("/v1/models", headers=auth(token)).status_code == 401
    assert client.get("/v1/models", headers=auth("mlcp_nope")).status_code == 401


def test_tokens_are_stored_hashed(cp: ControlPlane) -> None:
    from sqlalchemy import select

    from controlplane.db.models import ApiTokenRow

    _, token = cp.tokens.create("ci", "promoter", "test")
    with cp.sessions() as session:
        stored = session.execute(select(ApiTokenRow.token_sha256)).scalars().all()
    assert token not in stored
    assert all(len(s) == 64 for s in stored)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind"),
    [
        ("GET", "/v1/models/nosuch/versions", None, 404, "ModelNotFound"),
        ("GET", "/v1/models/bad name/versions/1", None, 422, "InvalidModelRef"),
        ("PUT", "/v1/models/churn/policy", {"gates": {"metrics": [{"metric": "auc"}]}}, 422,
         "InvalidPolicy"),
        ("PUT", "/v1/models/churn/policy", {"canary": {"percent": "lots"}}, 422, "InvalidPolicy"),
        ("POST", "/v1/models/churn/versions/1/promote", {"canary_percent": 500}, 422,
         "InvalidRequest"),
        ("POST", "/v1/models/churn/versions/1/promote", {"surprise": 1}, 422, "InvalidRequest"),
        ("POST", "/v1/tokens", {"name": "x", "role": "god"}, 422, "InvalidRequest"),
        ("GET", "/v1/models/churn/policy", None, 404, "NoPolicy"),
        ("GET", "/v1/audit?limit=0", None, 422, "InvalidRequest"),
    ],
)  # fmt: skip
def test_bad_requests_get_json_4xx(client, tokens, method, path, body, status, kind) -> None:
    response = client.request(method, path, json=body, headers=auth(tokens["admin"]))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind
    assert error["message"]


def test_policy_and_promotion_through_the_api(client, tokens, cp: ControlPlane, model_name) -> None:
    import numpy as np

    from registry import RegistrationRequest
    from tests.conftest import make_net

    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    cp.registry.register(RegistrationRequest(name=model_name, model=make_net(), input_example=x))
    put = client.put(
        f"/v1/models/{model_name}/policy",
        json={"gates": {"schema": {"inputs": [{"dtype": "float32", "shape": [-1, 4]}]}}},
        headers=auth(tokens["admin"]),
    )
    assert put.status_code == 200, put.text
    promoted = client.post(
        f"/v1/models/{model_name}/versions/1/promote", json={}, headers=auth(tokens["promoter"])
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["outcome"] == "promoted"
    shown = client.get(f"/v1/models/{model_name}/versions/champion", headers=auth(tokens["viewer"]))
    assert shown.json()["state"] == "production"
    runs = client.get(f"/v1/models/{model_name}/versions/1/gates", headers=auth(tokens["viewer"]))
    assert runs.json()[0]["outcome"] == "promoted"
    verify = client.get("/v1/audit/verify", headers=auth(tokens["viewer"]))
    assert verify.json()["ok"] is True
    assert client.get("/openapi.json").status_code == 200


def _exported_b64(x) -> str:
    import base64
    import io

    import torch

    from tests.conftest import make_net

    program = torch.export.export(
        make_net(), (torch.from_numpy(x),), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def test_data_scientist_registers_an_exported_program(client, tokens, model_name) -> None:
    import numpy as np

    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    body = {
        "model_pt2_base64": _exported_b64(x),
        "input_example": x.tolist(),
        "metrics": {"auc": 0.8},
        "idempotency_key": "nb-1",
    }
    url = f"/v1/models/{model_name}/versions"
    created = client.post(url, json=body, headers=auth(tokens["data-scientist"]))
    assert created.status_code == 201, created.text
    assert created.json()["ref"] == f"{model_name}@1"
    assert created.json()["registered_by"] == "token:t-data-scientist"
    again = client.post(url, json=body, headers=auth(tokens["data-scientist"]))
    assert again.json()["version"] == 1  # the idempotency key holds over HTTP too
    assert client.post(url, json=body, headers=auth(tokens["viewer"])).status_code == 403


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"model_pt2_base64": "%%%"}, "InvalidModel"),
        ({"model_pt2_base64": "aGVsbG8="}, "InvalidModel"),  # "hello": not an archive
        ({"input_example": [[1.0, 2.0, 3.0, 4.0]]}, "InvalidRequest"),  # one row
        ({"input_example": [[1.0, 2.0], [3.0, 4.0]]}, "InvalidModel"),  # wrong width
        ({"metrics": {"auc": "high"}}, "InvalidRequest"),
    ],
)
def test_bad_registrations_get_4xx(client, tokens, model_name, change, kind) -> None:
    import numpy as np

    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    body = {"model_pt2_base64": _exported_b64(x), "input_example": x.tolist(), **change}
    response = client.post(
        f"/v1/models/{model_name}/versions", json=body, headers=auth(tokens["admin"])
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["type"] == kind
    listed = client.get(f"/v1/models/{model_name}/versions", headers=auth(tokens["viewer"]))
    assert listed.status_code == 404  # nothing half-registered


def test_api_refuses_pickled_modules(client, tokens, model_name, tmp_path) -> None:
    import base64

    import numpy as np
    import torch

    from tests.conftest import make_net

    torch.save(make_net(), tmp_path / "m.pt")
    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)
    body = {
        "model_pt2_base64": base64.b64encode((tmp_path / "m.pt").read_bytes()).decode(),
        "input_example": x.tolist(),
    }
    response = client.post(
        f"/v1/models/{model_name}/versions", json=body, headers=auth(tokens["admin"])
    )
    assert response.status_code == 422
    assert "only torch.export programs" in response.json()["error"]["message"]
