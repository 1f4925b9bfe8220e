"""``POST /v1/registrations`` and ``POST /v1/evaluations``: a remote ``mlcp models register`` and
``mlcp evaluate``, on files uploaded first (``PUT /v1/uploads/...``), done by the same
`LocalService` code the CLI runs on the stores, as the token's owner. Plus the feature reads
(``GET /v1/features[/{ref}]``) a remote ``mlcp features list / show`` needs.

A model upload must be a torch.export archive: nothing a client sends is unpickled.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from controlplane.api.auth import require
from controlplane.api.uploads import upload_store
from controlplane.service.base import EvaluateFiles, RegisterFiles
from controlplane.service.local import LocalService
from controlplane.tokens import Principal

Reader = Annotated[Principal, Depends(require("read"))]
Registrant = Annotated[Principal, Depends(require("register"))]
Evaluator = Annotated[Principal, Depends(require("evaluate"))]

router = APIRouter()


def _upload_id(**default: Any) -> Any:
    about = "<sha256>/<name> of an upload"
    return Field(min_length=66, max_length=300, description=about, **default)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegistrationBody(_Body):
    """A version to register from uploads; the same fields as ``mlcp models register``."""

    name: str = Field(min_length=1, max_length=200)
    model: str = _upload_id()  # a torch.export archive (.pt2)
    input_example: str = _upload_id()  # .npy, .parquet or .csv
    training_data: str | None = _upload_id(default=None)
    label: str | None = None
    feature_service: str | None = None
    input_names: list[str] = Field(default_factory=list, max_length=10_000)
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    code_version: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)


class EvaluationBody(_Body):
    """An evaluation of ``ref`` on an uploaded file, as ``mlcp evaluate`` takes it."""

    ref: str = Field(min_length=3, max_length=300)
    data: str = _upload_id()
    label: str = Field(min_length=1)
    task: Literal["classification", "regression"] = "classification"
    features: list[str] | None = None
    feature_service: str | None = None


def _service(request: Request, who: Principal) -> LocalService:
    return LocalService(request.app.state.cp, f"token:{who.name}", trusted_files=False)


@router.post("/v1/registrations", status_code=201)
def register(body: RegistrationBody, request: Request, who: Registrant) -> dict[str, Any]:
    store = upload_store(request)
    files = RegisterFiles(
        name=body.name,
        model=store.path(body.model),
        input_example=store.path(body.input_example),
        training_data=store.path(body.training_data) if body.training_data else None,
        label=body.label,
        feature_service=body.feature_service,
        input_names=tuple(body.input_names),
        params=body.params,
        metrics=body.metrics,
        code_version=body.code_version,
        idempotency_key=body.idempotency_key,
        description=body.description,
    )
    return _service(request, who).register(files)


@router.post("/v1/evaluations")
def evaluate(body: EvaluationBody, request: Request, who: Evaluator) -> dict[str, Any]:
    data = upload_store(request).path(body.data)
    files = EvaluateFiles(
        body.ref, data, body.label, body.task, body.features, body.feature_service
    )
    return _service(request, who).evaluate(files)


@router.get("/v1/features")
def list_features(request: Request, who: Reader) -> dict[str, Any]:
    return _service(request, who).features()


@router.get("/v1/features/{ref}")
def show_feature(ref: str, request: Request, who: Reader) -> dict[str, Any]:
    return _service(request, who).feature(ref)
