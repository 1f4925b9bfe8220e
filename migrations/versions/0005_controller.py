"""The rollback controller: version lifecycle timestamps, canary steps and holds, replica
heartbeats, analyses, and which analysis consumed each window.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.add_column(sa.Column("state_changed_at", sa.DateTime(timezone=True)))
    # "validated" meant two things: gates passed and a person must approve, or a challenger
    # replaced by another. The first is now its own state.
    op.execute(
        """
        UPDATE mlcp_model_versions SET state = 'awaiting_approval'
        WHERE state = 'validated' AND (
            SELECT g.outcome FROM mlcp_gate_runs g
            WHERE g.model_name = mlcp_model_versions.model_name
              AND g.version = mlcp_model_versions.version
            ORDER BY g.id DESC LIMIT 1
        ) = 'pending_approval'
        """
    )
    with op.batch_alter_table("mlcp_models") as batch:
        batch.add_column(
            sa.Column("canary_paused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("step_started_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("hold_reason", sa.Text()))
    with op.batch_alter_table("mlcp_serving_windows") as batch:
        batch.add_column(
            sa.Column("client_errors", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("analysis_id", sa.BigInteger()))
    op.create_index(
        "ix_mlcp_serving_windows_unanalyzed",
        "mlcp_serving_windows",
        ["model_name", "version"],
        postgresql_where=sa.text("analysis_id IS NULL"),
        sqlite_where=sa.text("analysis_id IS NULL"),
    )
    op.create_table(
        "mlcp_replicas",
        sa.Column("replica", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("replica", name="pk_mlcp_replicas"),
    )
    op.create_table(
        "mlcp_analyses",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("client_errors", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("controller", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_analyses"),
    )
    op.create_index(
        "ix_mlcp_analyses_model_name_version_id", "mlcp_analyses", ["model_name", "version", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_mlcp_analyses_model_name_version_id", table_name="mlcp_analyses")
    op.drop_table("mlcp_analyses")
    op.drop_table("mlcp_replicas")
    op.drop_index("ix_mlcp_serving_windows_unanalyzed", table_name="mlcp_serving_windows")
    with op.batch_alter_table("mlcp_serving_windows") as batch:
        batch.drop_column("analysis_id")
        batch.drop_column("client_errors")
    with op.batch_alter_table("mlcp_models") as batch:
        batch.drop_column("hold_reason")
        batch.drop_column("step_started_at")
        batch.drop_column("canary_paused")
    op.execute(
        "UPDATE mlcp_model_versions SET state = 'validated' WHERE state = 'awaiting_approval'"
    )
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.drop_column("state_changed_at")
