"""What the sensor stage saw, by the minute (events per source and name, offers per sensor
and dependency), and the latest offered and filtered events of each sensor.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "activity_events",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("minute", _TS, primary_key=True),
        sa.Column("source", sa.String(500), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "activity_offers",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("minute", _TS, primary_key=True),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("dep", sa.String(255), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "activity_marks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(200), nullable=False),
        sa.Column("sensor_id", sa.String(400), nullable=False),
        sa.Column("dep", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index(
        "ix_activity_marks_sensor", "activity_marks", ["project", "domain", "sensor_id", "at"]
    )
    op.create_index("ix_activity_marks_at", "activity_marks", ["at"])


def downgrade() -> None:
    op.drop_table("activity_marks")
    op.drop_table("activity_offers")
    op.drop_table("activity_events")
