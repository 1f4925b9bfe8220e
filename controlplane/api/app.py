"""The control-plane REST API: models, versions, lineage, gates, policies, promotion,
approval, shadows, serving windows, drift, reports (HTML), audit and tokens. Every route but
/healthz needs a bearer token.

    uvicorn.run(create_app(ControlPlane.open()))      # what `mlcp api` does
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from controlplane import audit
from controlplane.api import errors, uploads, workflows
from controlplane.api.auth import require
from controlplane.api.guard import Guard
from controlplane.api.openapi import control_openapi
from controlplane.context import ControlPlane
from controlplane.lineage import build_lineage
from controlplane.policy import Policy
from controlplane.tokens import ROLES, Principal
from registry import validate_model_name
from registry.refs import MAX_VERSION

Reader = Annotated[Principal, Depends(require("read"))]
Registrant = Annotated[Principal, Depends(require("register"))]
Evaluator = Annotated[Principal, Depends(require("evaluate"))]
Promoter = Annotated[Principal, Depends(require("promote"))]
Approver = Annotated[Principal, Depends(require("approve"))]
PolicyAdmin = Annotated[Principal, Depends(require("policy"))]
TokenAdmin = Annotated[Principal, Depends(require("tokens"))]


class _Body(BaseModel):
    # NaN and Infinity parse from JSON (Python's reader takes them); no field wants them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PromoteBody(_Body):
    canary_percent: int | None = Field(default=None, ge=1, le=99)
    canary: bool = Field(default=False, description="start as a canary at the policy's first step")


class RollbackBody(_Body):
    """``{"reason": "..."}`` undoes the newest change; ``"to": 3`` returns to version 3."""

    to: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    reason: str = Field(min_length=1, max_length=2000)


class ShadowBody(_Body):
    """``{"version": 3}`` mirrors the model's traffic to version 3; ``{"version": null}`` stops."""

    version: int | None = Field(
        ge=1, le=MAX_VERSION, description="the version to shadow; null to stop"
    )
    reason: str | None = Field(default=None, max_length=2000)


class DecisionBody(_Body):
    reason: str | None = Field(default=None, max_length=2000)


class EvaluateBody(_Body):
    data_path: str = Field(
        min_length=1,
        max_length=1000,
        description="a .parquet/.csv file under the server's MLCP_API_DATA_ROOT, relative to "
        "it (or upload the file: PUT /v1/uploads, then POST /v1/evaluations)",
    )
    label: str = Field(min_length=1)
    task: Literal["classification", "regression"] = "classification"
    features: list[str] | None = None


class TrainingDataBody(_Body):
    fingerprint: str = Field(min_length=8, max_length=64)
    rows: int = Field(ge=0, le=2**53)
    source: str | None = None
    columns: list[str] = Field(default_factory=list, max_length=10_000)


class RegisterBody(_Body):
    """A version to register. The model travels as a torch.export archive (never a pickle)."""

    model_pt2_base64: str = Field(min_length=1, description="base64 of torch.export.save(...)")
    input_example: list[list[float]] = Field(min_length=2, description=">= 2 rows of inputs")
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    feature_service: str | None = None
    input_names: list[str] = Field(
        default_factory=list, description="the inputs in order, without a feature service"
    )
    training_data: TrainingDataBody | None = None
    reference_stats: dict[str, Any] | None = Field(
        default=None,
        description="features.reference_statistics(...) of the training set: aligned with the "
        "model's inputs at registration (keys, timestamps and labels dropped), or refused",
    )
    prediction_reference: dict[str, Any] | None = Field(
        default=None, description="the distribution of the model's outputs on its training set"
    )
    code_version: str | None = None
    idempotency_key: str | None = None
    description: str | None = None


class TokenBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    role: Literal[ROLES]  # type: ignore[valid-type]


def _actor(who: Principal) -> str:
    return f"token:{who.name}"


def create_app(cp: ControlPlane) -> FastAPI:
    app = FastAPI(
        title="mlcp control plane",
        version="1",
        description="Register, evaluate, gate and promote model versions, with an audit trail.",
    )
    app.state.cp = cp
    app.openapi = lambda: control_openapi(app)  # type: ignore[method-assign]
    errors.install(app)
    app.add_middleware(Guard, tokens=cp.tokens, max_body_bytes=cp.settings.api_max_body_kb << 10)
    # What a remote CLI needs beyond the routes below: uploads, and work done on them.
    app.include_router(uploads.router)
    app.include_router(workflows.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def ref(name: str, version: str) -> str:
        return f"{name}@{version}"

    @app.get("/v1/models")
    def list_models(_: Reader) -> list[dict[str, Any]]:
        return [v.to_dict() for v in cp.registry.versions()]

    @app.get("/v1/models/{name}/versions")
    def list_versions(name: str, _: Reader) -> list[dict[str, Any]]:
        return [v.to_dict() for v in cp.registry.versions(name)]

    @app.get("/v1/models/{name}/versions/{version}")
    def show_version(name: str, version: str, _: Reader) -> dict[str, Any]:
        return cp.registry.get(ref(name, version)).to_dict()

    @app.get("/v1/models/{name}/versions/{version}/lineage")
    def lineage(name: str, version: str, _: Reader) -> dict[str, Any]:
        v = cp.registry.get(ref(name, version))
        with cp.sessions() as session:
            events = audit.entries(session, subject=v.ref)
        return build_lineage(v, events).to_dict()

    @app.get("/v1/models/{name}/versions/{version}/gates")
    def gate_runs(name: str, version: str, _: Reader) -> list[dict[str, Any]]:
        return cp.promotions.gate_runs(ref(name, version))

    @app.get("/v1/models/{name}/policy")
    def show_policy(name: str, _: Reader) -> dict[str, Any]:
        return cp.policies.current(name).to_dict()

    @app.put("/v1/models/{name}/policy")
    def set_policy(name: str, body: dict[str, Any], who: PolicyAdmin) -> dict[str, Any]:
        """The policy as JSON (the YAML file's content). One that names no gate must say
        ``"gates": {"none": true}``: every version would pass it."""
        policy = Policy.from_dict(body, source="request body")
        return cp.policies.set(name, policy, _actor(who)).to_dict()

    @app.post("/v1/models/{name}/versions", status_code=201)
    def register(name: str, body: RegisterBody, who: Registrant) -> dict[str, Any]:
        return _register(cp, name, body, _actor(who)).to_dict()

    @app.post("/v1/models/{name}/versions/{version}/evaluate")
    def evaluate(name: str, version: str, body: EvaluateBody, who: Evaluator) -> dict[str, Any]:
        from controlplane.api.data_paths import evaluate_on_path

        candidate, champion = evaluate_on_path(cp, ref(name, version), body, _actor(who))
        return {"candidate": _eval(candidate), "champion": _eval(champion)}

    @app.post("/v1/models/{name}/versions/{version}/promote")
    def promote(name: str, version: str, body: PromoteBody, who: Promoter) -> JSONResponse:
        result = cp.promotions.promote(
            ref(name, version), _actor(who), canary_percent=body.canary_percent, canary=body.canary
        )
        status = 200 if result.accepted else 409 if result.outcome == "conflict" else 422
        return JSONResponse(result.to_dict(), status_code=status)

    @app.post("/v1/models/{name}/versions/{version}/approve")
    def approve(name: str, version: str, body: DecisionBody, who: Approver) -> dict[str, Any]:
        return cp.promotions.approve(ref(name, version), _actor(who), body.reason).to_dict()

    @app.post("/v1/models/{name}/versions/{version}/reject")
    def reject(name: str, version: str, body: DecisionBody, who: Approver) -> dict[str, Any]:
        if not body.reason:
            raise HTTPException(422, "reason: say why the version is rejected")
        v = cp.promotions.reject(ref(name, version), _actor(who), body.reason)
        return {"ref": v.ref, "state": v.state, "reason": body.reason}

    @app.post("/v1/models/{name}/shadow")
    def shadow(name: str, body: ShadowBody, who: Promoter) -> dict[str, Any]:
        if body.version is None:
            snap = cp.promotions.unshadow(name, _actor(who), body.reason)
        else:
            snap = cp.promotions.shadow(ref(name, str(body.version)), _actor(who), body.reason)
        return {"name": name, **snap.to_dict()}

    @app.get("/v1/deployments")
    def list_deployments(_: Reader) -> list[dict[str, Any]]:
        from controlplane.deployments import deployments

        return deployments(cp)

    @app.get("/v1/deployments/{name}")
    def show_deployment(name: str, _: Reader) -> dict[str, Any]:
        from controlplane.deployments import deployments

        found = deployments(cp, name)
        if not found:
            raise HTTPException(404, f"{name} is registered but not deployed")
        return found[0]

    @app.post("/v1/models/{name}/rollback")
    def rollback(name: str, body: RollbackBody, who: Promoter) -> dict[str, Any]:
        return cp.rollouts.rollback(
            name, actor=_actor(who), reason=body.reason, to=body.to
        ).to_dict()

    @app.post("/v1/models/{name}/canary/pause")
    def pause_canary(name: str, body: DecisionBody, who: Promoter) -> dict[str, Any]:
        why = body.reason or f"paused by {_actor(who)}"
        return cp.rollouts.pause(name, actor=_actor(who), reason=why).to_dict()

    @app.post("/v1/models/{name}/canary/resume")
    def resume_canary(name: str, body: DecisionBody, who: Promoter) -> dict[str, Any]:
        why = body.reason or f"resumed by {_actor(who)}"
        return cp.rollouts.resume(name, actor=_actor(who), reason=why).to_dict()

    @app.post("/v1/models/{name}/canary/abort")
    def abort_canary(name: str, body: DecisionBody, who: Promoter) -> dict[str, Any]:
        why = body.reason or f"aborted by {_actor(who)}"
        return cp.rollouts.abort(name, actor=_actor(who), reason=why).to_dict()

    @app.get("/v1/models/{name}/windows")
    def windows(
        name: str,
        _: Reader,
        version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        from controlplane.serving import serving_windows

        return serving_windows(cp.sessions, validate_model_name(name), version, limit)

    @app.get("/v1/models/{name}/versions/{version}/drift")
    def drift(
        name: str,
        version: str,
        _: Reader,
        windows: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> dict[str, Any]:
        """Each detector's statistics over the version's recent analysis windows, and what
        the drift detector concluded (what `mlcp drift NAME@V --json` prints)."""
        from controlplane.drift.report import drift_report

        return drift_report(cp, ref(name, version), windows)

    @app.get("/v1/models/{name}/report", response_class=HTMLResponse)
    def report(
        name: str,
        _: Reader,
        since: Annotated[
            datetime | None, Query(description="chart from then on (ISO 8601; UTC if no zone)")
        ] = None,
    ) -> HTMLResponse:
        """The model's report: one self-contained HTML page (what `mlcp report` writes)."""
        from controlplane.report.write import report_html

        when = None if since is None else audit.as_utc(since)
        return HTMLResponse(report_html(cp, validate_model_name(name), when))

    @app.get("/v1/audit")
    def audit_list(
        _: Reader,
        subject: str | None = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        with cp.sessions() as session:
            rows = audit.entries(session, subject=subject, action=action, limit=limit)
        return [r.to_dict() for r in rows]

    @app.get("/v1/audit/verify")
    def audit_verify(_: Reader) -> dict[str, Any]:
        with cp.sessions() as session:
            return audit.verify(session).to_dict()

    @app.post("/v1/tokens", status_code=201)
    def create_token(body: TokenBody, who: TokenAdmin) -> dict[str, Any]:
        token_id, token = cp.tokens.create(body.name, body.role, _actor(who))
        return {"id": token_id, "name": body.name, "role": body.role, "token": token}

    @app.get("/v1/tokens")
    def list_tokens(_: TokenAdmin, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Every token's id, owner, role and dates (what `mlcp tokens list --json` prints);
        never a token or its hash."""
        return cp.tokens.entries(include_revoked)

    @app.delete("/v1/tokens/{token_id}")
    def revoke_token(
        token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], who: TokenAdmin
    ) -> dict[str, Any]:
        if not cp.tokens.revoke(token_id, _actor(who)):
            raise HTTPException(404, f"no active token {token_id}")
        return {"id": token_id, "revoked": True}

    return app


def _register(cp: ControlPlane, name: str, body: RegisterBody, actor: str) -> Any:
    import base64
    import binascii
    import tempfile
    from pathlib import Path

    import numpy as np

    from registry import InvalidModel, RegistrationRequest, TrainingData
    from registry.model_files import load_exported_file

    try:
        archive = base64.b64decode(body.model_pt2_base64, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: characters outside ASCII
        raise InvalidModel(
            "model_pt2_base64", f"not base64 ({exc}): send base64 of torch.export.save(...)"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="mlcp-upload-") as tmp:
        path = Path(tmp) / "model.pt2"
        path.write_bytes(archive)
        model = load_exported_file(path, "model_pt2_base64")
    td = body.training_data
    return cp.registry.register(
        RegistrationRequest(
            name=name,
            model=model,
            input_example=np.asarray(body.input_example, dtype=np.float32),
            params=body.params,
            metrics=body.metrics,
            feature_service=body.feature_service,
            input_names=tuple(body.input_names),
            training_data=TrainingData(td.fingerprint, td.rows, td.source, tuple(td.columns))
            if td
            else None,
            reference_stats=body.reference_stats,
            prediction_reference=body.prediction_reference,
            code_version=body.code_version,
            registered_by=actor,
            idempotency_key=body.idempotency_key,
            description=body.description,
            archive=archive,
        )
    )


def _eval(evaluation: Any) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    from dataclasses import asdict

    return asdict(evaluation)
