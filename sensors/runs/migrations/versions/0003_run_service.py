"""Attempts, phase history (the lifecycle event outbox), retries, timeouts, abort causes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        runs.add_column(sa.Column("retries", sa.Integer, nullable=False, server_default="0"))
        runs.add_column(
            sa.Column("retry_backoff_seconds", sa.Float, nullable=False, server_default="0")
        )
        runs.add_column(sa.Column("timeout_seconds", sa.Float))
        runs.add_column(sa.Column("abort_cause", sa.Text))
    op.create_table(
        "run_attempts",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("phase", sa.String(30), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("error", sa.JSON),
        sa.Column("pid", sa.Integer),
        sa.Column("worker", sa.String(300)),
    )
    op.create_table(
        "run_phases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(200), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("phase", sa.String(30), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("error", sa.JSON),
        sa.Column("published_at", TS),
    )
    op.create_index("ix_run_phases_run", "run_phases", ["project", "domain", "name", "id"])
    op.create_index("ix_run_phases_unpublished", "run_phases", ["published_at", "id"])


def downgrade() -> None:
    op.drop_table("run_phases")
    op.drop_table("run_attempts")
    with op.batch_alter_table("runs") as runs:
        for column in ("abort_cause", "timeout_seconds", "retry_backoff_seconds", "retries"):
            runs.drop_column(column)
        runs.drop_column("attempts")
