"""Trigger kinds: a run's trigger info, a sensor's options, and per-key progress.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("trigger_info", sa.JSON))
    with op.batch_alter_table("sensors") as sensors:
        sensors.add_column(sa.Column("options", sa.JSON))
    op.create_table(
        "sensor_progress",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("count", sa.Integer),
        sa.Column("position", sa.Integer),
        sa.Column("deadline", TS),
        sa.Column("debounce_until", TS),
        sa.Column("coalesced", sa.Integer),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sensor_progress")
    with op.batch_alter_table("sensors") as sensors:
        sensors.drop_column("options")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("trigger_info")
