"""The control plane's tables (SQLAlchemy 2). Migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic's version table for our history; MLflow keeps its own `alembic_version`.
VERSION_TABLE = "mlcp_alembic_version"
GENESIS_HASH = "0" * 64

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# BIGINT ids on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class ModelVersionRow(Base):
    """One registration: a pending intent, then a registered version with its lineage."""

    __tablename__ = "mlcp_model_versions"
    __table_args__ = (
        UniqueConstraint("model_name", "version"),
        UniqueConstraint("model_name", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(String(32), unique=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | complete
    version: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), default="registered")
    run_id: Mapped[str | None] = mapped_column(String(64))
    model_uri: Mapped[str | None] = mapped_column(Text)
    source_uri: Mapped[str | None] = mapped_column(Text)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    model_format: Mapped[str | None] = mapped_column(String(16))
    signature: Mapped[dict[str, Any] | None] = mapped_column(Json)
    feature_service: Mapped[str | None] = mapped_column(String(200))
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64))
    dataset_rows: Mapped[int | None] = mapped_column(BigInteger)
    dataset_source: Mapped[str | None] = mapped_column(Text)
    dataset_columns: Mapped[list[str] | None] = mapped_column(Json)
    data_check: Mapped[dict[str, Any] | None] = mapped_column(Json)
    code_version: Mapped[str | None] = mapped_column(String(80))
    params: Mapped[dict[str, str] | None] = mapped_column(Json)
    metrics: Mapped[dict[str, float] | None] = mapped_column(Json)
    description: Mapped[str | None] = mapped_column(Text)
    registered_by: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reference_stats: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # The version's outputs on its evaluation (or training) set: what prediction drift
    # compares with. Set at registration from the training set, replaced by `mlcp evaluate`.
    prediction_reference: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # When ``state`` last changed: orders former champions for "the previous good version".
    state_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The process that began the registration, so a crashed one is recovered at once.
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_started: Mapped[str | None] = mapped_column(String(80))


class ModelRow(Base):
    """Per-model deployment state: who is champion, challenger and shadow. ``revision`` is
    the compare-and-set counter every transition bumps under a row lock."""

    __tablename__ = "mlcp_models"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    champion_version: Mapped[int | None] = mapped_column(Integer)
    challenger_version: Mapped[int | None] = mapped_column(Integer)
    canary_percent: Mapped[int | None] = mapped_column(Integer)
    shadow_version: Mapped[int | None] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The canary holds its weight: paused by a person, or held by the controller.
    canary_paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When the current traffic split began: the controller judges only windows after it.
    step_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hold_reason: Mapped[str | None] = mapped_column(Text)  # why the controller holds, if it does


class PolicyRow(Base):
    """One revision of a model's promotion policy (the YAML, parsed and normalized)."""

    __tablename__ = "mlcp_policies"
    __table_args__ = (UniqueConstraint("model_name", "revision"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(Json)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EvaluationRow(Base):
    """Task metrics of one version on one dataset (by fingerprint)."""

    __tablename__ = "mlcp_evaluations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    dataset_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    dataset_rows: Mapped[int] = mapped_column(BigInteger)
    dataset_source: Mapped[str | None] = mapped_column(Text)
    task: Mapped[str] = mapped_column(String(32))
    label_column: Mapped[str] = mapped_column(String(200))
    metrics: Mapped[dict[str, float]] = mapped_column(Json)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GateRunRow(Base):
    """Every gate result of one promotion attempt, with the policy it was judged by."""

    __tablename__ = "mlcp_gate_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(32))  # production | canary
    policy_sha256: Mapped[str] = mapped_column(String(64))
    policy_revision: Mapped[int] = mapped_column(Integer)
    champion_version: Mapped[int | None] = mapped_column(Integer)
    passed: Mapped[bool] = mapped_column(Boolean)
    results: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    outcome: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiTokenRow(Base):
    """A bearer token for the control API; only its sha256 is stored."""

    __tablename__ = "mlcp_api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """One state change. Append-only (triggers refuse UPDATE and DELETE) and hash-chained."""

    __tablename__ = "mlcp_audit_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(300), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(Json)
    after: Mapped[dict[str, Any] | None] = mapped_column(Json)
    reason: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(Json)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The chain's tip, one row: locking it serializes appends, and it exposes tail deletion."""

    __tablename__ = "mlcp_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class MaterializationRow(Base):
    """One materialization attempt of a feature view version: what was checked, and whether
    it went online."""

    __tablename__ = "mlcp_materializations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    view: Mapped[str] = mapped_column(String(100), index=True)  # name@version
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int] = mapped_column(BigInteger)
    passed: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[dict[str, Any]] = mapped_column(Json)
    generation: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeatureGenerationRow(Base):
    """A Feast view's materialization generation: caches in every process drop its entries
    when it moves."""

    __tablename__ = "mlcp_feature_generations"

    view: Mapped[str] = mapped_column(String(100), primary_key=True)  # the Feast view name
    generation: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServingWindowRow(Base):
    """One replica's report window of one served version, for the rollback controller.

    The counters the controller filters on are columns; ``body`` is the whole
    ``serving.windows.Window.to_dict()`` (latency histogram, feature and prediction sketches).
    """

    __tablename__ = "mlcp_serving_windows"
    __table_args__ = (
        Index(
            "ix_mlcp_serving_windows_model_name_version_ended_at",
            "model_name",
            "version",
            "ended_at",
        ),
        Index(
            "ix_mlcp_serving_windows_unanalyzed",
            "model_name",
            "version",
            postgresql_where=text("analysis_id IS NULL"),
            sqlite_where=text("analysis_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    replica: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # champion | challenger | shadow | retired
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[int] = mapped_column(BigInteger)
    latency_sum_s: Mapped[float] = mapped_column(Float)
    body: Mapped[dict[str, Any]] = mapped_column(Json)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    client_errors: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Device-seconds its batches took, and the predictions it answered (cost per inference).
    compute_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    answered: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The analysis that consumed the window (NULL: not analysed yet). Marking rather than a
    # cursor on ids: a window committed late with a smaller id is still analysed.
    analysis_id: Mapped[int | None] = mapped_column(BigInteger)


class ReplicaRow(Base):
    """A serving replica's last heartbeat: what it serves, as `serving.spec.ReplicaStatus`."""

    __tablename__ = "mlcp_replicas"

    replica: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[dict[str, Any]] = mapped_column(Json)


class AnalysisRow(Base):
    """One analysis of one live version by the controller: merged windows, checks, verdict."""

    __tablename__ = "mlcp_analyses"
    __table_args__ = (
        Index("ix_mlcp_analyses_model_name_version_id", "model_name", "version", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # champion | challenger
    revision: Mapped[int] = mapped_column(Integer)  # the model's revision it judged
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verdict: Mapped[str] = mapped_column(String(16))  # pass | fail | inconclusive
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[int] = mapped_column(BigInteger)
    client_errors: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[dict[str, Any]] = mapped_column(Json)  # checks, latency, windows, replicas
    controller: Mapped[str] = mapped_column(String(200))
