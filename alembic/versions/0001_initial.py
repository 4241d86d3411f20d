"""Initial schema: allocations, the DNS work queue, pool zone shape, registrar pacing.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_allocations",
        sa.Column("pool_domain", sa.Text(), nullable=False),
        sa.Column("subdomain", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reserved_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("reservation_token", sa.String(64), nullable=False),
        sa.Column("sovereign_fqdn", sa.Text(), nullable=True),
        sa.Column("load_balancer_ip", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("state IN ('reserved', 'active')", name=op.f("ck_pool_allocations_state")),
        sa.PrimaryKeyConstraint("pool_domain", "subdomain", name=op.f("pk_pool_allocations")),
    )
    op.create_index(
        "ix_pool_allocations_expires_at_reserved",
        "pool_allocations",
        ["expires_at"],
        postgresql_where=sa.text("state = 'reserved'"),
        sqlite_where=sa.text("state = 'reserved'"),
    )
    op.create_index("ix_pool_allocations_pool_domain_state", "pool_allocations", ["pool_domain", "state"])

    op.create_table(
        "dns_work",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("pool_domain", sa.Text(), nullable=False),
        sa.Column("subdomain", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("action IN ('publish', 'remove')", name=op.f("ck_dns_work_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dns_work")),
    )
    op.create_index("ix_dns_work_pool_domain_id", "dns_work", ["pool_domain", "id"])

    op.create_table(
        "pool_zones",
        sa.Column("pool_domain", sa.Text(), nullable=False),
        sa.Column("foreign_subhost_records", sa.Integer(), server_default="0", nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pool_domain", name=op.f("pk_pool_zones")),
    )

    op.create_table(
        "registrar_accounts",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("last_call_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_registrar_accounts")),
    )


def downgrade() -> None:
    op.drop_table("registrar_accounts")
    op.drop_table("pool_zones")
    op.drop_index("ix_dns_work_pool_domain_id", table_name="dns_work")
    op.drop_table("dns_work")
    op.drop_index("ix_pool_allocations_pool_domain_state", table_name="pool_allocations")
    op.drop_index("ix_pool_allocations_expires_at_reserved", table_name="pool_allocations")
    op.drop_table("pool_allocations")
