"""Bad input to the serving app is a 4xx with ``{"error": "..."}``: entity keys of the wrong
type, booleans for numbers, outputs the model lacks, unknown routes and methods; and its
OpenAPI document describes the model endpoints as they answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serving.spec import Deployment
from tests.serving.conftest import StaticLoader, make_model, spec_for
from tests.serving.test_app import infer_body, serve

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    loader = StaticLoader()
    loader.add(spec_for("churn", 1, service="churn_features@1"), make_model(1))
    server, _ = serve(loader, Deployment("churn", champion=1))
    with server:
        yield server.url


def post(url: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (1.5, "is 1.5; an entity key is an integer or a string"),
        (True, "is true; an entity key is an integer or a string"),
        (1.0, "is 1.0; an entity key is an integer or a string"),
        (2**63, "past a 64-bit integer"),
    ],
)
def test_entity_keys_must_be_integers_or_strings(url: str, key: Any, why: str) -> None:
    # 1.5 and true once answered 200 as customer 1 (the store coerced the key).
    r = post(url, "/v1/models/churn/predict", {"entities": [{"customer_id": key}]})
    assert r.status_code == 400, r.text
    assert why in r.json()["error"]


def test_booleans_are_not_fp32(url: str) -> None:
    # Once read as 1.0 and 0.0.
    r = post(url, "/v2/models/churn/infer", infer_body([[True, 0.0, 1.0, 0.0, False]]))
    assert r.status_code == 400
    assert "holds true/false" in r.json()["error"]


def test_an_unknown_requested_output_is_refused(url: str) -> None:
    # Once ignored with a 200.
    body = infer_body([[0.0] * 5], outputs=[{"name": "probabilities"}])
    r = post(url, "/v2/models/churn/infer", body)
    assert r.status_code == 400
    assert "unknown output 'probabilities'" in r.json()["error"]
    ok = post(url, "/v2/models/churn/infer", infer_body([[0.0] * 5], outputs=[{"name": "output"}]))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nosuch", 404),
        ("DELETE", "/v2/health/live", 405),
        ("GET", "/v2/models/churn/infer", 405),
        ("GET", "/v2/models/churn/versions/x", 400),
    ],
)
def test_routing_errors_have_the_error_shape(url: str, method: str, path: str, status: int) -> None:
    r = httpx.request(method, url + path, timeout=30)
    assert r.status_code == status
    assert set(r.json()) == {"error"}


def test_openapi_documents_the_model_endpoints(url: str) -> None:
    doc = httpx.get(url + "/openapi.json", timeout=30).json()
    for path in (
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v1/models/{name}/predict",
    ):
        post_ = doc["paths"][path]["post"]
        assert "$ref" in post_["requestBody"]["content"]["application/json"]["schema"]
        assert {"200", "400", "404", "413", "503", "504"} <= set(post_["responses"])
        assert post_["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert "HTTPValidationError" not in doc["components"]["schemas"]
