"""Launch targets: a run's target options (an argv, a request template) and its trigger's
limits (rate and concurrency).

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
        runs.add_column(sa.Column("rate_limit_count", sa.Integer))
        runs.add_column(sa.Column("rate_limit_seconds", sa.Float))
        runs.add_column(sa.Column("max_concurrency", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("max_concurrency")
        runs.drop_column("rate_limit_seconds")
        runs.drop_column("rate_limit_count")
        runs.drop_column("target_options")
