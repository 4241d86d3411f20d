"""The job leader's DS check of each PowerDNS pool (``pool_zones.ds_status``: published,
missing, different or unknown, as ``dns.powerdns.ds_check`` answers; ``ds_checked_at``:
when), kept where every process's /metrics reads it (``pdm_dns_ds_status``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool_zones") as batch:
        batch.add_column(sa.Column("ds_status", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ds_checked_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pool_zones") as batch:
        batch.drop_column("ds_checked_at")
        batch.drop_column("ds_status")
