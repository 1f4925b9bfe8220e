"""The serving app's OpenAPI document, as the server answers: every route with every status
it can give, the error body ``{"error": "..."}``, and the three model endpoints (plain
Starlette routes, which FastAPI would leave out) with their request and response schemas.

    app.openapi = lambda: serving_openapi(app)

Starlette's own errors (an unknown route's 404, a wrong method's 405) and FastAPI's
parameter errors get the same error body: `install_error_handlers(app)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.protocol import InferenceRequest, PredictRequest

ERROR = {"$ref": "#/components/schemas/Error"}
_WHY = {
    400: "the request does not fit the model (the message says what to change)",
    404: "no such model or version is served here",
    413: "the body is over the size limit",
    422: "entities the feature store does not know",
    503: "not ready, overloaded (Retry-After) or features unavailable",
    504: "the request's deadline passed before it was answered",
    500: "the model failed on this batch",
}
# Statuses per route beyond 200: what the handlers and `serving.errors` can give.
_GETS = {
    "/v2": (),
    "/v2/health/live": (),
    "/v2/health/ready": (503,),
    "/v2/models/{name}": (404, 503),
    "/v2/models/{name}/versions/{version}": (400, 404, 503),
    "/v2/models/{name}/ready": (404, 503),
    "/v2/models/{name}/versions/{version}/ready": (400, 404, 503),
    "/v1/serving/state": (),
    "/metrics": (),
}
_MODEL_ERRORS = (400, 404, 413, 500, 503, 504)


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferenceResponse(BaseModel):
    """``POST /v2/models/{name}[/versions/{v}]/infer``'s answer (JSON part)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


class PredictResponse(BaseModel):
    """``POST /v1/models/{name}/predict``'s answer: one prediction per entity, in order."""

    model_name: str
    model_version: str | None = Field(description="null when versions split the entities")
    predictions: list[Any]
    versions: list[int]
    feature_service: str | None
    id: str | None = None
    stale_features: dict[str, Any] | None = None


def install_error_handlers(app: FastAPI) -> None:
    """Routing's 404/405 and FastAPI's parameter errors as ``{"error": "..."}``."""

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, str(exc.detail), exc.headers)

    async def bad_parameter(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"])
        return _error(400, f"{where}: {first['msg']}")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, bad_parameter)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps({"error": message}).encode()
    return Response(body, status, headers=headers, media_type="application/json")


def serving_openapi(app: FastAPI) -> dict[str, Any]:
    """The document, built once and kept on the app."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    for model in (InferenceRequest, PredictRequest, InferenceResponse, PredictResponse):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    paths = schema.setdefault("paths", {})
    for path, codes in _GETS.items():
        operation = paths.get(path, {}).get("get")
        if operation is not None:
            operation["responses"] = _responses({"description": "ok"}, codes)
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}}
    paths["/v2/models/{name}/infer"] = {
        "post": _model_post("infer", [name], InferenceRequest, InferenceResponse)
    }
    paths["/v2/models/{name}/versions/{version}/infer"] = {
        "post": _model_post("infer_version", [name, version], InferenceRequest, InferenceResponse)
    }
    paths["/v1/models/{name}/predict"] = {
        "post": _model_post("predict", [name], PredictRequest, PredictResponse, (422,))
    }
    app.openapi_schema = schema
    return schema


def _model_post(
    operation: str,
    parameters: list[dict[str, Any]],
    request: type[BaseModel],
    response: type[BaseModel],
    extra: tuple[int, ...] = (),
) -> dict[str, Any]:
    ok = {
        "description": "the model's answer",
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{response.__name__}"}}
        },
    }
    return {
        "operationId": operation,
        "summary": (request.__doc__ or "").strip().splitlines()[0],
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{request.__name__}"}}
            },
        },
        "responses": _responses(ok, (*_MODEL_ERRORS, *extra)),
    }


def _responses(ok: dict[str, Any], codes: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for code in sorted(set(codes)):
        out[str(code)] = {
            "description": _WHY[code],
            "content": {"application/json": {"schema": ERROR}},
        }
    return out
