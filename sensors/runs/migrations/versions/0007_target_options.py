"""Launch targets: a run's target options (an argv, a request template).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("target_options", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("target_options")
