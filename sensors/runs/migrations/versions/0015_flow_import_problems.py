"""The flow files that failed to import, shown until they are fixed.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_import_problems",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("line", sa.Integer),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("traceback", sa.Text, nullable=False),
        sa.Column("where", sa.Text),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flow_import_problems")
