"""allocation_history: every state change and the caller who made it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import BigId, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "allocation_history",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("pool_domain", sa.Text(), nullable=False),
        sa.Column("subdomain", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("load_balancer_ip", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation_history")),
    )
    op.create_index(
        "ix_allocation_history_pool_domain_subdomain_id", "allocation_history", ["pool_domain", "subdomain", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_allocation_history_pool_domain_subdomain_id", table_name="allocation_history")
    op.drop_table("allocation_history")
