"""Resyncs that walk a large pool in slices: when the last whole resync began (a commit's
pass, which reads only its own names, no longer counts as one), and how far the resync
under way has come (the last name checked, names checked of those to check); and an
index to read the hosts the service owns by tenant name.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool_zones") as batch:
        batch.add_column(sa.Column("resynced_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("resync_started_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("resync_after", sa.Text(), nullable=True))
        batch.add_column(sa.Column("resync_checked", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("resync_total", sa.Integer(), server_default="0", nullable=False))
    # Until now every good pass read the whole pool.
    op.execute("UPDATE pool_zones SET resynced_at = synced_at")
    op.create_index("ix_dns_owned_hosts_pool_domain_subdomain", "dns_owned_hosts", ["pool_domain", "subdomain"])


def downgrade() -> None:
    op.drop_index("ix_dns_owned_hosts_pool_domain_subdomain", table_name="dns_owned_hosts")
    with op.batch_alter_table("pool_zones") as batch:
        for column in ("resync_total", "resync_checked", "resync_after", "resync_started_at", "resynced_at"):
            batch.drop_column(column)
