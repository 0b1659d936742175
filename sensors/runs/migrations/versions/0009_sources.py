"""Event sources: their deployed revisions, what the processes running them report, and
the leases of the sources only one process may read at a time.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_SCOPE = ("project", "domain")


def upgrade() -> None:
    op.create_table(
        "sources",
        *(sa.Column(c, sa.String(200), primary_key=True) for c in (*_SCOPE, "name")),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("deployed_at", _TS, nullable=False),
        sa.Column("retired_at", _TS),
    )
    op.create_table(
        "source_status",
        *(sa.Column(c, sa.String(200), primary_key=True) for c in (*_SCOPE, "source")),
        sa.Column("instance", sa.String(300), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("since", _TS, nullable=False),
        *(
            sa.Column(c, sa.BigInteger, nullable=False)
            for c in ("messages_in", "events_out", "filtered", "dead_lettered")
        ),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_at", _TS),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "source_leases",
        *(sa.Column(c, sa.String(200), primary_key=True) for c in (*_SCOPE, "source")),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("source_leases", "source_status", "sources"):
        op.drop_table(table)
