"""Runs, trigger failures and deployed sensors.

A migration is a frozen snapshot: it repeats the schema of its day on purpose and
must never import the live tables in sensors/runs/tables.py, which move on.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(200), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("sensor_id", sa.String(400)),
        sa.Column("trigger", sa.String(200)),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("entrypoint", sa.JSON, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("error", sa.JSON),
        sa.Column("pid", sa.Integer),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.UniqueConstraint("project", "domain", "name", name="uq_runs_name"),
    )
    op.create_index("ix_runs_sensor_created", "runs", ["sensor_id", "created_at"])
    op.create_index("ix_runs_phase", "runs", ["phase"])
    op.create_index("ix_runs_created", "runs", ["created_at"])
    op.create_table(
        "trigger_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sensor_id", sa.String(400), nullable=False),
        sa.Column("event_name", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("sensor_id", "event_id", name="uq_trigger_failures_event"),
    )
    op.create_index("ix_trigger_failures_created", "trigger_failures", ["created_at"])
    op.create_table(
        "sensors",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("dependencies", sa.JSON, nullable=False),
        sa.Column("within_seconds", sa.Float, nullable=False),
        sa.Column("deployed_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sensors")
    op.drop_table("trigger_failures")
    op.drop_table("runs")
