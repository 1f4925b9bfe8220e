"""Registration intents name their process (host, pid, start), so a crashed one is recovered
at once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.add_column(sa.Column("owner_host", sa.String(255)))
        batch.add_column(sa.Column("owner_pid", sa.Integer()))
        batch.add_column(sa.Column("owner_started", sa.String(80)))


def downgrade() -> None:
    with op.batch_alter_table("mlcp_model_versions") as batch:
        batch.drop_column("owner_started")
        batch.drop_column("owner_pid")
        batch.drop_column("owner_host")
