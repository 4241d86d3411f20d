"""Convergence: the hosts the service owns, the last good read and block state per
pool, a fencing token per registrar account, and a detail for history events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dns_owned_hosts",
        sa.Column("pool_domain", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("subdomain", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pool_domain", "host", name=op.f("pk_dns_owned_hosts")),
    )
    with op.batch_alter_table("pool_zones") as batch:
        batch.add_column(sa.Column("foreign_records", sa.Text(), nullable=True))
        batch.add_column(sa.Column("record_names", sa.Text(), nullable=True))
        batch.add_column(sa.Column("blocked_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("blocked_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("blocked_since", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("recheck_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("registrar_accounts") as batch:
        batch.add_column(sa.Column("fence", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("allocation_history") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
    op.create_index("ix_allocation_history_at", "allocation_history", ["at"])


def downgrade() -> None:
    op.drop_index("ix_allocation_history_at", table_name="allocation_history")
    with op.batch_alter_table("allocation_history") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("registrar_accounts") as batch:
        batch.drop_column("fence")
    with op.batch_alter_table("pool_zones") as batch:
        for column in ("recheck_at", "blocked_since", "blocked_detail", "blocked_reason", "record_names",
                       "foreign_records"):
            batch.drop_column(column)
    op.drop_table("dns_owned_hosts")
