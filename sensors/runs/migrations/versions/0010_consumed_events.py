"""What each sensor's runs consumed: one run per sensor and event id, so that two workers
deciding from the same events (a stale partition owner, an older definition) cannot
start two runs under different names.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consumed_events",
        *(sa.Column(c, sa.String(200), primary_key=True) for c in ("project", "domain")),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("run_name", sa.String(253), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consumed_events")
