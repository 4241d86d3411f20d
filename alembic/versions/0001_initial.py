"""Initial schema: allocations, the DNS work queue, pool zone shape, registrar pacing --
or, on a database the previous service used, its ``pool_allocations`` table adopted in
place.

The previous service created ``pool_allocations`` itself at start-up (no migration tool,
so no ``alembic_version``). Its active rows are live tenants and its reservations may be
minutes old, so at switch-over the table is converted, never recreated: every row kept,
clear-text tokens stored as this service stores them, the new column added, the names of
the indexes and constraints made this schema's, and every active tenant's records queued
for publishing (the previous service wrote them in a wrong shape, or not at all).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
import ipaddress
import logging

import sqlalchemy as sa
from alembic import op

from pdm_app.models import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.adopt")

# The previous service's table, exactly (wire contract: "The old service's table").
PREVIOUS_COLUMNS = {"pool_domain", "subdomain", "state", "reserved_at", "expires_at", "sovereign_fqdn",
                    "load_balancer_ip", "reservation_token", "created_by"}


def upgrade() -> None:
    # Offline (--sql) output describes a fresh database: adopting needs to look at one.
    adopting = not op.get_context().as_sql and sa.inspect(op.get_bind()).has_table("pool_allocations")
    if adopting:
        counts = _adopt_previous_table()
    else:
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

    if adopting:
        counts["publish_queued"] = _queue_publish_of_active_tenants()
        log.info("adopted the previous service's pool_allocations: %(rows)d row(s) (%(active)d active, "
                 "%(reserved)d reserved), %(tokens)d reservation token(s) converted to their digest, "
                 "%(publish_queued)d publish work item(s) queued", counts)


def _adopt_previous_table() -> dict:
    """Convert the previous service's ``pool_allocations`` into this schema's, in place.
    Refuses (and, PostgreSQL DDL being transactional, changes nothing) when the table is
    not exactly that table or holds rows this service could not serve."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        raise RuntimeError(
            f"pool_allocations already exists in this {bind.dialect.name} database, which has no Alembic "
            "history: adopting the previous service's table is supported on PostgreSQL only")
    # The previous service, if still running, must not change a row between the checks
    # below and the conversion (its writes wait, then fail against the new shape).
    op.execute("LOCK TABLE pool_allocations IN ACCESS EXCLUSIVE MODE")

    inspector = sa.inspect(bind)
    columns = {c["name"]: c for c in inspector.get_columns("pool_allocations")}
    pk = inspector.get_pk_constraint("pool_allocations")
    checks = [c["name"] for c in inspector.get_check_constraints("pool_allocations")]
    indexes = [i["name"] for i in inspector.get_indexes("pool_allocations")]
    if (set(columns) != PREVIOUS_COLUMNS or not isinstance(columns["reservation_token"]["type"], sa.Uuid)
            or pk["constrained_columns"] != ["pool_domain", "subdomain"]):
        # Above all never hash tokens twice: a table in this schema whose alembic_version
        # was lost (a partial restore) has digests, not UUIDs.
        raise RuntimeError(
            "pool_allocations exists but the database has no Alembic history, and the table is not the "
            "previous service's (expected exactly the columns " + ", ".join(sorted(PREVIOUS_COLUMNS))
            + " with reservation_token UUID and the primary key (pool_domain, subdomain); found "
            + ", ".join(f"{n} {c['type']}" for n, c in sorted(columns.items()))
            + f"; primary key {pk['constrained_columns']}). If it is this service's own table, "
            "run 'alembic stamp <its revision>' instead; otherwise move it out of the way.")

    problems = [f"{pool}/{sub}: no state" for pool, sub in bind.execute(sa.text(
        "SELECT pool_domain, subdomain FROM pool_allocations WHERE state IS NULL ORDER BY 1, 2"))]
    # Every pass of a pool publishes all its active tenants: one without an IPv4 address
    # would stop the pool's DNS, so it is fixed (or released) before the switch.
    for pool, sub, ip in bind.execute(sa.text(
            "SELECT pool_domain, subdomain, load_balancer_ip FROM pool_allocations "
            "WHERE state = 'active' ORDER BY 1, 2")):
        try:
            ipaddress.IPv4Address(ip or "")
        except ValueError:
            problems.append(f"{pool}/{sub}: active with load_balancer_ip {ip!r}, not an IPv4 address")
    if problems:
        raise RuntimeError(
            "the previous service's pool_allocations holds rows this service cannot take over; fix or "
            "delete them, then run the migration again: " + "; ".join(problems[:20])
            + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""))

    counts = dict(bind.execute(sa.text(
        "SELECT count(*) AS rows, count(*) FILTER (WHERE state = 'active') AS active, "
        "count(*) FILTER (WHERE state = 'reserved') AS reserved, "
        "count(reservation_token) AS tokens FROM pool_allocations")).mappings().one())

    # This service keeps only the SHA-256 of a token (pdm_app.domain.token_digest) of the
    # string the client holds: the previous service answered reserve with the UUID as
    # text, lower-case and hyphenated -- exactly uuid::text -- so a reservation made just
    # before the switch still commits, and an active tenant's commit retry is still one.
    # A row without a token gets '' (no digest equals it, so no token matches).
    op.alter_column(
        "pool_allocations", "reservation_token", type_=sa.String(64), nullable=False,
        postgresql_using="COALESCE(encode(sha256(convert_to(reservation_token::text, 'UTF8')), 'hex'), '')")
    op.alter_column("pool_allocations", "state", existing_type=sa.Text(), nullable=False)
    for name, column in columns.items():
        if column["default"] is not None:  # the schema defines no column defaults
            op.alter_column("pool_allocations", name, server_default=None)
    op.add_column("pool_allocations", sa.Column("updated_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE pool_allocations SET updated_at = date_trunc('second', now())")
    op.alter_column("pool_allocations", "updated_at", nullable=False)

    # This schema's names (the previous service let PostgreSQL pick them), so later
    # migrations and the models find what they expect.
    if pk["name"] != "pk_pool_allocations":
        op.execute(f'ALTER TABLE pool_allocations RENAME CONSTRAINT "{pk["name"]}" TO pk_pool_allocations')
    for name in checks:  # op.f(): the name as it is, not run through the naming convention
        op.drop_constraint(op.f(name), "pool_allocations", type_="check")
    op.create_check_constraint(op.f("ck_pool_allocations_state"), "pool_allocations",
                               "state IN ('reserved', 'active')")
    # Indexes hold no data: the previous ones go, upgrade() creates this schema's.
    for name in indexes:
        op.drop_index(op.f(name), table_name="pool_allocations")
    return counts


def _queue_publish_of_active_tenants() -> int:
    """One publish work item per active tenant, due now: the job leader's next DNS pass
    makes every active tenant's records exactly what the table says."""
    result = op.get_bind().execute(sa.text(
        "INSERT INTO dns_work (pool_domain, subdomain, action, created_at, attempts, next_attempt_at) "
        "SELECT pool_domain, subdomain, 'publish', date_trunc('second', now()), 0, date_trunc('second', now()) "
        "FROM pool_allocations WHERE state = 'active' ORDER BY pool_domain, subdomain"))
    return result.rowcount


def downgrade() -> None:
    # Dropping the table frees every name in it: live tenants' (adopted from the previous
    # service or made since) would be handed out again. Only an empty table goes.
    if not op.get_context().as_sql:
        held = op.get_bind().execute(sa.text("SELECT count(*) FROM pool_allocations")).scalar()
        if held:
            raise RuntimeError(
                f"refusing to downgrade below 0001: pool_allocations holds {held} allocation(s); dropping "
                "the table would hand out names that tenants hold (and the previous service could not take "
                "them back: their tokens are stored as digests). Release them first, or delete the rows by "
                "hand to discard them.")
    op.drop_table("registrar_accounts")
    op.drop_table("pool_zones")
    op.drop_index("ix_dns_work_pool_domain_id", table_name="dns_work")
    op.drop_table("dns_work")
    op.drop_index("ix_pool_allocations_pool_domain_state", table_name="pool_allocations")
    op.drop_index("ix_pool_allocations_expires_at_reserved", table_name="pool_allocations")
    op.drop_table("pool_allocations")
