"""Features: materialization records and per-view generations for cache invalidation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mlcp_materializations",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("view", sa.String(100), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("generation", sa.BigInteger()),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mlcp_materializations"),
    )
    op.create_index("ix_mlcp_materializations_view", "mlcp_materializations", ["view"])
    op.create_table(
        "mlcp_feature_generations",
        sa.Column("view", sa.String(100), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("view", name="pk_mlcp_feature_generations"),
    )


def downgrade() -> None:
    op.drop_table("mlcp_feature_generations")
    op.drop_index("ix_mlcp_materializations_view", table_name="mlcp_materializations")
    op.drop_table("mlcp_materializations")
