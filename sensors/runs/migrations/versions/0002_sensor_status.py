"""What sensors hold and what they filtered out, for `tripwire sensors status`; conditions.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("sensors", sa.Column("conditions", sa.Text))
    op.add_column("sensors", sa.Column("correlate_by", sa.JSON))
    op.create_table(
        "sensor_holds",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("dep", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_time", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "filter_counts",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("dep", sa.String(255), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("last_reason", sa.Text, nullable=False),
        sa.Column("last_event_id", sa.String(255), nullable=False),
        sa.Column("last_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_column("sensors", "correlate_by")
    op.drop_column("sensors", "conditions")
    op.drop_table("filter_counts")
    op.drop_table("sensor_holds")
