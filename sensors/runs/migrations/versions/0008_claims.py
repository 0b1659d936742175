"""Who claimed a run (QUEUED -> RUNNING): the worker that must start it, so that a run
whose worker died between its claim and its first attempt can be started by another.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("claimed_by", sa.String(300)))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("claimed_by")
