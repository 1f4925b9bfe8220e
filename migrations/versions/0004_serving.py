"""Serving: a shadow version per model, and the windows replicas report.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("mlcp_models") as batch:
        batch.add_column(sa.Column("shadow_version", sa.Integer()))

    op.create_table(
        "mlcp_serving_windows",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("replica", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum_s", sa.Float(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_serving_windows"),
    )
    op.create_index("ix_mlcp_serving_windows_model_name", "mlcp_serving_windows", ["model_name"])
    op.create_index(
        "ix_mlcp_serving_windows_model_name_version_ended_at",
        "mlcp_serving_windows",
        ["model_name", "version", "ended_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_mlcp_serving_windows_model_name_version_ended_at", table_name="mlcp_serving_windows"
    )
    op.drop_index("ix_mlcp_serving_windows_model_name", table_name="mlcp_serving_windows")
    op.drop_table("mlcp_serving_windows")
    with op.batch_alter_table("mlcp_models") as batch:
        batch.drop_column("shadow_version")
