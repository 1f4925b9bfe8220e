"""A version's prediction reference: the distribution of its outputs on its evaluation (or
training) set, so the controller can tell when its live predictions drift.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.add_column(sa.Column("prediction_reference", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.drop_column("prediction_reference")
