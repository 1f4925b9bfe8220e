"""`ControlService` on the stores themselves: a `ControlPlane` and the actor it records.

The CLI uses it without ``MLCP_API_URL`` (actor: ``MLCP_ACTOR``); the control API's routes
use it with the token's owner as the actor and ``trusted_files=False`` (a model file from a
client must be a torch.export program: nothing a client sends is unpickled).

    service = LocalService(cp, actor="alice")
    service.register(RegisterFiles("churn", Path("model.pt"), Path("x.npy")))
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controlplane.jsonable import as_json
from controlplane.service.base import (
    CANARY_ACTIONS,
    EvaluateFiles,
    Json,
    Progress,
    RegisterFiles,
    silent,
)

if TYPE_CHECKING:
    from controlplane.context import ControlPlane
    from controlplane.policy import Policy


class LocalService:
    """Every command's work, on one `ControlPlane`, recorded as ``actor``."""

    def __init__(self, cp: ControlPlane, actor: str, *, trusted_files: bool = True) -> None:
        self.cp = cp
        self.actor = actor
        self.trusted_files = trusted_files

    # -- models --------------------------------------------------------------------------------
    def versions(self, name: str | None = None) -> list[Json]:
        return [as_json(v.to_dict()) for v in self.cp.registry.versions(name)]

    def version(self, ref: str) -> Json:
        return as_json(self.cp.registry.get(ref).to_dict())

    def register(self, request: RegisterFiles, progress: Progress = silent) -> Json:
        from features.fingerprint import read_dataset
        from registry import RegistrationRequest, validate_model_name
        from registry.archive import is_exported_archive
        from registry.errors import UnsafeModel
        from registry.model_files import load_exported_file, load_input_example, load_model_file

        validate_model_name(request.name)
        progress(f"loading {request.model}")
        if request.unsafe_allow_pickle and not self.trusted_files:
            raise UnsafeModel(
                str(request.model), "the control API never unpickles a file a client sends"
            )
        if request.model_format == "pickle" and not request.unsafe_allow_pickle:
            raise UnsafeModel(
                "--format pickle",
                "it stores the model as a pickle, which serving and the gates would unpickle "
                "(running its code): add --unsafe-allow-pickle if you trust it",
            )
        if self.trusted_files:
            model = load_model_file(request.model, unsafe_allow_pickle=request.unsafe_allow_pickle)
        else:  # a client's upload
            model = load_exported_file(request.model, f"upload {request.model.parent.name[:12]}...")
        # An exported program is stored as the file holds it (the registry re-checks the copy).
        archive = request.model.read_bytes() if is_exported_archive(request.model) else None
        example = load_input_example(request.input_example)
        frame = source = None
        if request.training_data is not None:
            progress(f"reading {request.training_data}")
            frame = read_dataset(request.training_data)
            # Absolute, so gates can read the rows back from any working directory. The
            # fingerprint and statistics are the registration rules' (controlplane.registration).
            source = str(request.training_data.resolve())
        version = self.cp.registry.register(
            RegistrationRequest(
                name=request.name,
                model=model,
                input_example=example,
                params=dict(request.params),
                metrics=dict(request.metrics),
                feature_service=request.feature_service,
                input_names=tuple(request.input_names),
                training_frame=frame,
                training_source=source,
                label=request.label,
                code_version=request.code_version,
                registered_by=self.actor,
                idempotency_key=request.idempotency_key,
                description=request.description,
                model_format=request.model_format,
                archive=archive,
            ),
            progress=progress,
        )
        return as_json(version.to_dict())

    def lineage(self, ref: str) -> Json:
        from controlplane import audit
        from controlplane.lineage import build_lineage

        version = self.cp.registry.get(ref)
        with self.cp.sessions() as session:
            events = audit.entries(session, subject=version.ref)
        return as_json(build_lineage(version, events).to_dict())

    # -- evaluation and promotion -------------------------------------------------------------
    def evaluate(self, request: EvaluateFiles, progress: Progress = silent) -> Json:
        from registry.evaluation import check_task

        check_task(request.task)
        data, columns = request.data, request.features
        if request.feature_service is not None:
            data, joined = self._from_feast(request.feature_service, data, request.label, progress)
            columns = columns or joined
        candidate, champion = self.cp.evaluations.evaluate(
            request.ref,
            data,
            request.label,
            request.task,  # type: ignore[arg-type]  # checked above
            feature_columns=columns,
            actor=self.actor,
            progress=progress,
        )
        return {"candidate": _evaluation(candidate), "champion": _evaluation(champion)}

    def promote(self, ref: str, canary_percent: int | None = None, *, canary: bool = False) -> Json:
        result = self.cp.promotions.promote(
            ref, self.actor, canary_percent=canary_percent, canary=canary
        )
        return as_json(result.to_dict())

    def approve(self, ref: str, reason: str | None = None) -> Json:
        return as_json(self.cp.promotions.approve(ref, self.actor, reason).to_dict())

    def reject(self, ref: str, reason: str) -> Json:
        version = self.cp.promotions.reject(ref, self.actor, reason)
        return {"ref": version.ref, "state": version.state, "reason": reason}

    def gate_runs(self, ref: str) -> list[Json]:
        return as_json(self.cp.promotions.gate_runs(ref))

    def shadow(self, ref: str, reason: str | None = None) -> Json:
        snap = self.cp.promotions.shadow(ref, self.actor, reason)
        return {"name": ref.partition("@")[0], **snap.to_dict()}

    def unshadow(self, name: str, reason: str | None = None) -> Json:
        return {"name": name, **self.cp.promotions.unshadow(name, self.actor, reason).to_dict()}

    def windows(self, ref: str, limit: int = 20) -> list[Json]:
        from controlplane.serving.windows import serving_windows
        from registry.refs import ModelRef, validate_model_name

        if "@" not in ref:
            name, version = validate_model_name(ref), None
        else:
            parsed = ModelRef.parse(ref)
            name, version = parsed.name, parsed.version
            if version is None:  # an alias: champion, challenger
                version = self.cp.registry.get(parsed).version
        return as_json(serving_windows(self.cp.sessions, name, version, limit))

    def report(self, name: str, since: datetime | None = None) -> str:
        from controlplane.report.write import report_html

        return report_html(self.cp, name, since)

    # -- deployments and rollouts --------------------------------------------------------------
    def drift(self, ref: str, windows: int = 20) -> Json:
        from controlplane.drift.report import drift_report

        return as_json(drift_report(self.cp, ref, windows))

    def deployments(self, name: str | None = None) -> list[Json]:
        from controlplane.deployments import deployments

        return as_json(deployments(self.cp, name))

    def rollback(self, name: str, reason: str, to: int | None = None) -> Json:
        result = self.cp.rollouts.rollback(name, actor=self.actor, reason=reason, to=to)
        return as_json(result.to_dict())

    def canary(self, name: str, action: str, reason: str | None = None) -> Json:
        if action not in CANARY_ACTIONS:
            raise ValueError(f"canary action {action!r}: use one of {', '.join(CANARY_ACTIONS)}")
        done = {"pause": "paused", "resume": "resumed", "abort": "aborted"}[action]
        why = reason or f"{done} by {self.actor}"
        move = getattr(self.cp.rollouts, action)  # pause | resume | abort
        return as_json(move(name, actor=self.actor, reason=why).to_dict())

    # -- policies -----------------------------------------------------------------------------
    def set_policy(self, name: str, policy: Policy) -> Json:
        return as_json(self.cp.policies.set(name, policy, self.actor).to_dict())

    def policy(self, name: str) -> Json:
        return as_json(self.cp.policies.current(name).to_dict())

    # -- audit --------------------------------------------------------------------------------
    def audit(
        self, subject: str | None = None, action: str | None = None, limit: int = 50
    ) -> list[Json]:
        from controlplane import audit

        with self.cp.sessions() as session:
            rows = audit.entries(session, subject=subject, action=action, limit=limit)
        return as_json([r.to_dict() for r in rows])

    def verify_audit(self) -> Json:
        from controlplane import audit

        with self.cp.sessions() as session:
            return as_json(audit.verify(session).to_dict())

    # -- features (reads) ---------------------------------------------------------------------
    def features(self) -> Json:
        repo = self.cp.features.repo
        return {
            "views": [_view(v) for v in repo.views()],
            "services": [_service(s) for s in repo.services()],
        }

    def feature(self, ref: str) -> Json:
        from features.errors import FeatureNotFound
        from features.refs import VersionedRef

        parsed = VersionedRef.parse(ref)  # a bad ref is refused before Feast loads (~7 s)
        repo = self.cp.features.repo
        try:
            return _service(repo.service(parsed))
        except FeatureNotFound:
            info = _view(repo.view(parsed))
        info["materializations"] = as_json(self.cp.features.history(ref))
        return info

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, name: str, role: str) -> Json:
        token_id, token = self.cp.tokens.create(name, role, self.actor)
        return {"id": token_id, "name": name, "role": role, "token": token}

    def tokens(self, include_revoked: bool = False) -> list[Json]:
        return self.cp.tokens.entries(include_revoked)

    def revoke_token(self, token_id: int) -> Json:
        from controlplane.tokens import TokenNotFound

        if not self.cp.tokens.revoke(token_id, self.actor):
            raise TokenNotFound(token_id)
        return {"id": token_id, "revoked": True}

    # -- internals ----------------------------------------------------------------------------
    def _from_feast(
        self, service: str, entities: Path, label: str, progress: Progress
    ) -> tuple[Path, list[str]]:
        """The evaluation rows as Feast served them at each entity row's time, kept as a file
        (named by its fingerprint) so the data-quality gate can read the same rows later."""
        from features.fingerprint import read_dataset

        progress(f"joining {service} onto {entities} (point in time)")
        ts = self.cp.features.training_set(service, read_dataset(entities), labels=(label,))
        name = f"{service.replace('@', '-v')}-{ts.fingerprint.sha256[:16]}.parquet"
        out = self.cp.settings.home / "evaluations" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        ts.frame.to_parquet(out, index=False)
        return out, list(ts.features)


def _evaluation(evaluation: Any) -> Json | None:
    if evaluation is None:
        return None
    return as_json({**asdict(evaluation), "ref": f"{evaluation.name}@{evaluation.version}"})


def _view(v: Any) -> Json:
    return {
        "ref": str(v.ref),
        "entity": v.entity,
        "join_key": v.join_key,
        "fields": [f"{f.name}:{f.dtype}{'' if f.nullable else ' not null'}" for f in v.fields],
        "freshness_s": v.freshness_s,
        "ttl_s": v.ttl_s,
        "source": v.source,
        "schema_sha256": v.schema_sha256,
    }


def _service(s: Any) -> Json:
    return {
        "ref": str(s.ref),
        "features": list(s.features),
        "views": [str(v) for v in s.views],
        "join_keys": list(s.join_keys),
        "freshness_s": s.freshness_s,
        "schema_sha256": s.schema_sha256,
    }
