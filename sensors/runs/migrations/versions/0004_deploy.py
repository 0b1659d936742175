"""Projects, deployed flow revisions, run inputs and recovery.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("inputs_uri", sa.String(1000)))
        runs.add_column(sa.Column("flow_revision", sa.Integer))
        runs.add_column(sa.Column("recovered_from", sa.String(253)))
    with op.batch_alter_table("sensors") as sensors:
        sensors.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="1"))
        sensors.add_column(sa.Column("retired_at", TS))
    op.create_table(
        "projects",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "flows",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("domain", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("deployed_at", TS, nullable=False),
        sa.Column("retired_at", TS),
    )


def downgrade() -> None:
    op.drop_table("flows")
    op.drop_table("projects")
    with op.batch_alter_table("sensors") as sensors:
        sensors.drop_column("retired_at")
        sensors.drop_column("revision")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("recovered_from")
        runs.drop_column("flow_revision")
        runs.drop_column("inputs_uri")
