"""Each worker's heartbeat, so that a worker on another host can settle the runs of one
that stopped.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=False),
        sa.Column("gone_at", _TS),
    )


def downgrade() -> None:
    op.drop_table("workers")
