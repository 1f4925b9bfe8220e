"""Model versions with lineage, and the hash-chained audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Append-only, enforced by the database: a row of the audit log can be added, never changed.
_PG_GUARD = """
CREATE FUNCTION mlcp_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'mlcp_audit_log is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql
"""
_SQLITE_GUARDS = [
    "CREATE TRIGGER mlcp_audit_log_no_update BEFORE UPDATE ON mlcp_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'mlcp_audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER mlcp_audit_log_no_delete BEFORE DELETE ON mlcp_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'mlcp_audit_log is append-only: DELETE refused'); END",
]


def upgrade() -> None:
    op.create_table(
        "mlcp_model_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("registration_id", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer()),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("model_uri", sa.Text()),
        sa.Column("source_uri", sa.Text()),
        sa.Column("artifact_sha256", sa.String(64)),
        sa.Column("model_format", sa.String(16)),
        sa.Column("signature", sa.JSON()),
        sa.Column("feature_service", sa.String(200)),
        sa.Column("dataset_fingerprint", sa.String(64)),
        sa.Column("dataset_rows", sa.BigInteger()),
        sa.Column("dataset_source", sa.Text()),
        sa.Column("dataset_columns", sa.JSON()),
        sa.Column("data_check", sa.JSON()),
        sa.Column("code_version", sa.String(80)),
        sa.Column("params", sa.JSON()),
        sa.Column("metrics", sa.JSON()),
        sa.Column("description", sa.Text()),
        sa.Column("registered_by", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_model_versions"),
        sa.UniqueConstraint("registration_id", name="uq_mlcp_model_versions_registration_id"),
        sa.UniqueConstraint(
            "model_name", "version", name="uq_mlcp_model_versions_model_name_version"
        ),
        sa.UniqueConstraint(
            "model_name",
            "idempotency_key",
            name="uq_mlcp_model_versions_model_name_idempotency_key",
        ),
    )
    op.create_index("ix_mlcp_model_versions_model_name", "mlcp_model_versions", ["model_name"])

    op.create_table(
        "mlcp_audit_log",
        sa.Column("seq", BigId, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("before", sa.JSON()),
        sa.Column("after", sa.JSON()),
        sa.Column("reason", sa.Text()),
        sa.Column("evidence", sa.JSON()),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_mlcp_audit_log"),
        sa.UniqueConstraint("prev_hash", name="uq_mlcp_audit_log_prev_hash"),
        sa.UniqueConstraint("hash", name="uq_mlcp_audit_log_hash"),
    )
    op.create_index("ix_mlcp_audit_log_action", "mlcp_audit_log", ["action"])
    op.create_index("ix_mlcp_audit_log_subject", "mlcp_audit_log", ["subject"])

    head = op.create_table(
        "mlcp_audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
        op.execute(
            "CREATE TRIGGER mlcp_audit_log_append_only BEFORE UPDATE OR DELETE ON mlcp_audit_log "
            "FOR EACH ROW EXECUTE FUNCTION mlcp_audit_append_only()"
        )
    else:
        for statement in _SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS mlcp_audit_log_append_only ON mlcp_audit_log")
        op.execute("DROP FUNCTION IF EXISTS mlcp_audit_append_only()")
    op.drop_table("mlcp_audit_head")
    op.drop_index("ix_mlcp_audit_log_subject", table_name="mlcp_audit_log")
    op.drop_index("ix_mlcp_audit_log_action", table_name="mlcp_audit_log")
    op.drop_table("mlcp_audit_log")
    op.drop_index("ix_mlcp_model_versions_model_name", table_name="mlcp_model_versions")
    op.drop_table("mlcp_model_versions")
