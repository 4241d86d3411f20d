"""The operators' console: where each change came from (``allocation_history.origin``:
"api 10.1.2.3", "console 10.1.2.3", "cli", "dns pass"), when a pool's last pass ended
(``pool_zones.last_pass_at``), and the indexes its pages page through at 100,000
allocations: a pool's allocations by when they last changed, by when they were reserved,
and by who created them; the history by caller.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_pool_allocations_pool_domain_updated_at_subdomain": ("pool_allocations", ["pool_domain", "updated_at", "subdomain"]),
    "ix_pool_allocations_pool_domain_reserved_at_subdomain": ("pool_allocations", ["pool_domain", "reserved_at", "subdomain"]),
    "ix_pool_allocations_pool_domain_created_by_subdomain": ("pool_allocations", ["pool_domain", "created_by", "subdomain"]),
    "ix_allocation_history_caller_id": ("allocation_history", ["caller", "id"]),
}


def upgrade() -> None:
    with op.batch_alter_table("allocation_history") as batch:
        batch.add_column(sa.Column("origin", sa.Text(), nullable=True))
    with op.batch_alter_table("pool_zones") as batch:
        batch.add_column(sa.Column("last_pass_at", UTCDateTime(), nullable=True))
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("pool_zones") as batch:
        batch.drop_column("last_pass_at")
    with op.batch_alter_table("allocation_history") as batch:
        batch.drop_column("origin")
