"""Promotion: per-model deployment state, policies, evaluations, gate runs, API tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.add_column(sa.Column("reference_stats", sa.JSON()))

    op.create_table(
        "mlcp_models",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("champion_version", sa.Integer()),
        sa.Column("challenger_version", sa.Integer()),
        sa.Column("canary_percent", sa.Integer()),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_mlcp_models"),
    )
    op.create_table(
        "mlcp_policies",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_policies"),
        sa.UniqueConstraint("model_name", "revision", name="uq_mlcp_policies_model_name_revision"),
    )
    op.create_index("ix_mlcp_policies_model_name", "mlcp_policies", ["model_name"])
    op.create_table(
        "mlcp_evaluations",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=False),
        sa.Column("dataset_rows", sa.BigInteger(), nullable=False),
        sa.Column("dataset_source", sa.Text()),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("label_column", sa.String(200), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_evaluations"),
    )
    op.create_index("ix_mlcp_evaluations_model_name", "mlcp_evaluations", ["model_name"])
    op.create_index(
        "ix_mlcp_evaluations_dataset_fingerprint", "mlcp_evaluations", ["dataset_fingerprint"]
    )
    op.create_table(
        "mlcp_gate_runs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("policy_sha256", sa.String(64), nullable=False),
        sa.Column("policy_revision", sa.Integer(), nullable=False),
        sa.Column("champion_version", sa.Integer()),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_gate_runs"),
    )
    op.create_index("ix_mlcp_gate_runs_model_name", "mlcp_gate_runs", ["model_name"])
    op.create_table(
        "mlcp_api_tokens",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_api_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_mlcp_api_tokens_token_sha256"),
    )


def downgrade() -> None:
    op.drop_table("mlcp_api_tokens")
    op.drop_index("ix_mlcp_gate_runs_model_name", table_name="mlcp_gate_runs")
    op.drop_table("mlcp_gate_runs")
    op.drop_index("ix_mlcp_evaluations_dataset_fingerprint", table_name="mlcp_evaluations")
    op.drop_index("ix_mlcp_evaluations_model_name", table_name="mlcp_evaluations")
    op.drop_table("mlcp_evaluations")
    op.drop_index("ix_mlcp_policies_model_name", table_name="mlcp_policies")
    op.drop_table("mlcp_policies")
    op.drop_table("mlcp_models")
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.drop_column("reference_stats")
