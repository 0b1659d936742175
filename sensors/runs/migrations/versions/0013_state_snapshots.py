"""Snapshots of the correlation state per changelog partition, so that a new owner replays
only the changelog after the latest one.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "state_snapshots",
        sa.Column("topic", sa.String(249), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("claim", sa.BigInteger, nullable=False),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("claimed_at", _TS, nullable=False),
        sa.Column("changelog_offset", sa.BigInteger),
        sa.Column("data", sa.LargeBinary),
        sa.Column("key_count", sa.Integer),
        sa.Column("saved_at", _TS),
    )


def downgrade() -> None:
    op.drop_table("state_snapshots")
