"""The one place that maps the packages' errors to HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane import errors as cp
from controlplane.tokens import InvalidRole, TokenNotFound
from features.errors import (
    DataQualityFailed,
    DefinitionConflict,
    FeatureNotFound,
    FeatureStoreError,
    InvalidDataset,
    InvalidDefinition,
    InvalidFeatureRef,
    OnlineStoreUnavailable,
)
from registry import errors as reg

log = logging.getLogger("controlplane.api")

# Most specific first: the first isinstance match wins.
STATUS: list[tuple[type[Exception], int]] = [
    (reg.ModelNotFound, 404),
    (reg.VersionNotFound, 404),
    (cp.NoPolicy, 404),
    (FeatureNotFound, 404),
    (InvalidFeatureRef, 422),
    (InvalidDefinition, 422),
    (DataQualityFailed, 422),
    (DefinitionConflict, 409),
    (OnlineStoreUnavailable, 503),
    (reg.InvalidModelRef, 422),
    (reg.ArtifactTampered, 409),
    (reg.InvalidRegistration, 422),
    (reg.InvalidModel, 422),
    (cp.InvalidPolicy, 422),
    (cp.InvalidUpload, 422),
    (cp.InvalidDataPath, 422),
    (InvalidRole, 422),
    (TokenNotFound, 404),
    (InvalidDataset, 422),
    (cp.InvalidTransition, 409),
    (cp.ConcurrentChange, 409),
    (reg.IdempotencyConflict, 409),
    (reg.RegistrationInProgress, 409),
    (reg.RegistryUnavailable, 503),
    (cp.DatabaseUnavailable, 503),
    (reg.RegistryError, 400),
    (FeatureStoreError, 400),
    (cp.ControlPlaneError, 400),
]


def error_body(kind: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"type": kind, "message": message, **extra}}


def install(app: FastAPI) -> None:
    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(exc, kind))
        return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status)

    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
        ]
        first = problems[0] if problems else {"where": "body", "problem": "invalid"}
        message = f"{first['where']}: {first['problem']}"
        return JSONResponse(
            error_body("InvalidRequest", message, problems=problems), status_code=422
        )

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        # Starlette's own, for routing's 404 and 405 too: the same shape as every error.
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            error_body("HTTPError", str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("InternalError", "internal error; see the server log"), status_code=500
        )

    for kind in (reg.RegistryError, FeatureStoreError, cp.ControlPlaneError):
        app.add_exception_handler(kind, domain_error)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal)
