"""Safe as the single authority: who holds each reservation (the per-caller quota), which
active tenants were carried over from the previous service's table (their records are
the service's although it never recorded publishing them), the names a pool's DNS holds
foreign records at (so check can refuse them without a registrar call), the DNS work a
pass refused to carry out (it would have taken over foreign records), why a pool's
passes fail, and rate-limit counters shared by every worker and replica.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool_allocations") as batch:
        batch.add_column(sa.Column("reserved_by", sa.Text(), nullable=True))
        batch.add_column(sa.Column("carried_over", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index("ix_pool_allocations_pool_domain_reserved_by", "pool_allocations",
                    ["pool_domain", "reserved_by"],
                    postgresql_where=sa.text("state = 'reserved'"), sqlite_where=sa.text("state = 'reserved'"))
    # Active tenants none of whose hosts the service has recorded as its own were carried
    # over from the previous service (its table adopted by 0001): the records at their
    # hosts are theirs. Tenants this service published already own their hosts.
    op.execute(
        "UPDATE pool_allocations SET carried_over = true WHERE state = 'active' AND NOT EXISTS ("
        "SELECT 1 FROM dns_owned_hosts o WHERE o.pool_domain = pool_allocations.pool_domain "
        "AND o.subdomain = pool_allocations.subdomain)"
    )
    with op.batch_alter_table("dns_work") as batch:
        batch.add_column(sa.Column("refusal", sa.Text(), nullable=True))
    op.create_table(
        "dns_conflicts",
        sa.Column("pool_domain", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pool_domain", "label", name=op.f("pk_dns_conflicts")),
    )
    with op.batch_alter_table("pool_zones") as batch:
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("failing_since", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("late_write_until", UTCDateTime(), nullable=True))
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        # Seconds since the epoch (the limits library's clock).
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
        # Every limited request writes a counter: on PostgreSQL without WAL (no flush to
        # disk per request). A crash or a failover empties the table: the windows start
        # over, which a safety net can afford.
        prefixes=["UNLOGGED"] if op.get_context().dialect.name == "postgresql" else [],
    )
    op.create_index("ix_rate_limit_counters_expires_at", "rate_limit_counters", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_counters_expires_at", table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
    with op.batch_alter_table("pool_zones") as batch:
        for column in ("late_write_until", "failing_since", "last_error"):
            batch.drop_column(column)
    op.drop_table("dns_conflicts")
    with op.batch_alter_table("dns_work") as batch:
        batch.drop_column("refusal")
    op.drop_index("ix_pool_allocations_pool_domain_reserved_by", table_name="pool_allocations")
    with op.batch_alter_table("pool_allocations") as batch:
        batch.drop_column("carried_over")
        batch.drop_column("reserved_by")
