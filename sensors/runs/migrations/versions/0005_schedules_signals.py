"""Schedules (a cursor per scheduled trigger, a run's tick) and signals (events runs wait for).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("scheduled_at", TS))
    with op.batch_alter_table("sensors") as sensors:
        sensors.add_column(sa.Column("schedule", sa.JSON))
    op.create_table(
        "schedule_state",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("cursor", TS, nullable=False),
        sa.Column("pending", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "run_signals",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("run_name", sa.String(253), primary_key=True),
        sa.Column("action_name", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("expected_type", sa.String(10), nullable=False),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("value", sa.JSON),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("timeout_at", TS),
        sa.Column("signalled_at", TS),
    )


def downgrade() -> None:
    op.drop_table("run_signals")
    op.drop_table("schedule_state")
    with op.batch_alter_table("sensors") as sensors:
        sensors.drop_column("schedule")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("scheduled_at")
