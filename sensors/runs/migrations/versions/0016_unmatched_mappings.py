"""Per sensor, the mapped parameters of its runs that kept their defaults because their
source matched nothing, with the last one.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unmatched_mappings",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("sensor_id", sa.String(400), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("last", sa.Text, nullable=False),
        sa.Column("last_run", sa.String(253), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("unmatched_mappings")
