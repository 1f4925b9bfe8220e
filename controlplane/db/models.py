"""The control plane's tables (SQLAlchemy 2). Migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
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
