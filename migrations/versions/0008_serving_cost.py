"""Cost per inference: each serving window's device-seconds and the predictions it answered
(computed or from the prediction cache), so `mlcp deployments` can show what 1,000
predictions cost per version.

Revision ID: 0008_serving_cost
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_serving_cost"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mlcp_serving_windows") as batch:
        batch.add_column(sa.Column("compute_s", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("answered", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("mlcp_serving_windows") as batch:
        batch.drop_column("answered")
        batch.drop_column("compute_s")
