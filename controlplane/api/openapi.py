"""The control API's OpenAPI document as the server answers: every status a route can give,
each error with the body the server sends (``{"error": {"type", "message", ...}}``), not
FastAPI's default 422 schema, which this server never sends.

    app.openapi = lambda: control_openapi(app)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR = {"$ref": "#/components/schemas/Error"}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
        "required": ["error"],
    },
    "ErrorDetail": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "the error's class: InvalidPolicy..."},
            "message": {"type": "string", "description": "what is wrong and how to fix it"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"where": {"type": "string"}, "problem": {"type": "string"}},
                },
            },
        },
        "required": ["type", "message"],
    },
}
# Why each status comes, on any route (routes differ in which apply: see _codes).
WHY = {
    400: "the request was refused by a rule of the control plane",
    401: "no token, or an unknown or revoked one",
    403: "the token's role may not do this",
    404: "no such model, version, policy, token or route",
    405: "the route takes other methods",
    409: "another change won, or the version's state does not allow this",
    413: "the body is over MLCP_API_MAX_BODY_KB (uploads: MLCP_API_MAX_UPLOAD_MB)",
    422: "a field, parameter or file does not validate: the message names it",
    503: "a store the control plane needs can't be reached; retry later",
}
OPEN = frozenset({"/healthz"})
# A refused or lost promotion answers with the promotion's report, which CI reads.
REPORTS = {("/v1/models/{name}/versions/{version}/promote", "post"): (409, 422)}


def control_openapi(app: FastAPI) -> dict[str, Any]:
    """The document, built once and kept on the app."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    found = components.setdefault("schemas", {})
    found.pop("HTTPValidationError", None)
    found.pop("ValidationError", None)
    found.update(SCHEMAS)
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            reports = REPORTS.get((path, method), ())
            for code in _codes(path, method, operation):
                body = {"type": "object"} if code in reports else ERROR
                responses[str(code)] = {
                    "description": WHY[code],
                    "content": {"application/json": {"schema": body}},
                }
            if path not in OPEN:
                operation["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    if path in OPEN:
        return []
    codes = [400, 401, 403, 404, 422, 503]
    if method in ("post", "put", "patch", "delete"):
        codes.append(409)
    if "requestBody" in operation or method in ("post", "put", "patch"):
        codes.append(413)
    return codes
