"""Tables. Alembic owns the schema (``alembic/versions``); these mappings must agree
with it, which ``tests/integration/test_migrations.py`` checks."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# The Alembic head these models describe; /readyz compares the database with it.
# Revision ids are zero-padded numbers ("0003" follows "0002"), so they order.
SCHEMA_REVISION = "0010"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Always hands back aware UTC datetimes (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PoolAllocation(Base):
    __tablename__ = "pool_allocations"

    pool_domain: Mapped[str] = mapped_column(Text, primary_key=True)
    subdomain: Mapped[str] = mapped_column(Text, primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # SHA-256 of the reservation token: enough to check a commit or recognise its retry,
    # useless to anyone who reads the table.
    reservation_token: Mapped[str] = mapped_column(String(64))
    sovereign_fqdn: Mapped[str | None] = mapped_column(Text, nullable=True)
    load_balancer_ip: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Who reserved it (the token's name, else the client address): the per-caller quota of
    # open reservations counts these. None on rows older than the quota.
    reserved_by: Mapped[str | None] = mapped_column(Text, nullable=True)
    # An active tenant carried over from the previous service's table: the A records at
    # its hosts are the service's although it never recorded publishing them.
    carried_over: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)

    __table_args__ = (
        CheckConstraint("state IN ('reserved', 'active')", name="state"),
        Index(
            "ix_pool_allocations_expires_at_reserved",
            "expires_at",
            postgresql_where=text("state = 'reserved'"),
            sqlite_where=text("state = 'reserved'"),
        ),
        Index("ix_pool_allocations_pool_domain_state", "pool_domain", "state"),
        # The console pages through a pool by these (migration 0008).
        Index("ix_pool_allocations_pool_domain_updated_at_subdomain", "pool_domain", "updated_at", "subdomain"),
        Index("ix_pool_allocations_pool_domain_reserved_at_subdomain", "pool_domain", "reserved_at", "subdomain"),
        Index("ix_pool_allocations_pool_domain_created_by_subdomain", "pool_domain", "created_by", "subdomain"),
        Index(
            "ix_pool_allocations_pool_domain_reserved_by",
            "pool_domain",
            "reserved_by",
            postgresql_where=text("state = 'reserved'"),
            sqlite_where=text("state = 'reserved'"),
        ),
    )


class DnsWork(Base):
    """A DNS change owed to the registrar, written in the same transaction as the row
    change that implies it and deleted once the registrar holds it."""

    __tablename__ = "dns_work"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pool_domain: Mapped[str] = mapped_column(Text)
    subdomain: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when a pass refused to publish a tenant rather than take over what is not the
    # service's: "dns-conflict" or "pool-full" (``last_error`` says what was in the way).
    refusal: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        CheckConstraint("action IN ('publish', 'remove')", name="action"),
        Index("ix_dns_work_pool_domain_id", "pool_domain", "id"),
    )


class AllocationEvent(Base):
    """Every state change, and who made it (the authenticated caller's name)."""

    __tablename__ = "allocation_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pool_domain: Mapped[str] = mapped_column(Text)
    subdomain: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    caller: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    load_balancer_ip: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What a DNS event was about (hosts repaired, a redacted registrar error).
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Where the change came from ("api 10.1.2.3", "console 10.1.2.3", "cli", "dns pass");
    # None on events older than it (migration 0008) and on the background jobs'.
    origin: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_allocation_history_pool_domain_subdomain_id", "pool_domain", "subdomain", "id"),
        Index("ix_allocation_history_at", "at"),
        Index("ix_allocation_history_caller_id", "caller", "id"),
    )


class PoolZone(Base):
    """Per pool: what the last good zone read showed besides the service's own records
    (so a commit can tell without a registrar call whether the zone still has room, and a
    later read that lost some of them is recognised as broken), whether the pool is
    blocked and why, and when the zone is owed another read. (Commits of a pool serialise
    on an advisory lock, not on this row, which every pass updates.)"""

    __tablename__ = "pool_zones"

    pool_domain: Mapped[str] = mapped_column(Text, primary_key=True)
    foreign_subhost_records: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    # The last good read (None: the zone's shape is not known yet).
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # JSON list of [host, type, value, extra]: every record of that read that is not ours.
    foreign_records: Mapped[str | None] = mapped_column(Text, nullable=True)
    # PDM_TENANT_RECORDS as of that read: a different list makes a resync due.
    record_names: Mapped[str | None] = mapped_column(Text, nullable=True)
    blocked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    blocked_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    blocked_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A read owed after a failed pass, or after a write that may still land late.
    recheck_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # PowerDNS pools: the DS lines (SHA-256) of the pool zone's key, one per line, which
    # the pool domain's registrar must publish for the chain of trust to reach it.
    ds_records: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Why the pool's last pass failed (any error, redacted) and since when its passes
    # fail; None once a pass succeeds.
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # After a zone write that failed or timed out: until when the registrar may still
    # apply it (the zone is read again soon, about a minute later, and at this time).
    late_write_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the last resync that checked every name began (a Dynadot pass always reads the
    # whole zone; a PowerDNS commit's pass reads only its own names and does not count).
    resynced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A resync under way (PowerDNS, in slices): when it began, the last name checked
    # (None: none under way), and names checked of the names to check.
    resync_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resync_after: Mapped[str | None] = mapped_column(Text, nullable=True)
    resync_checked: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    resync_total: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    # When the pool's last pass that reached its DNS ended, whatever came of it (a good
    # read, a failure or a block).
    last_pass_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # PowerDNS pools: what the job leader's last look at the DS the pool domain's registrar
    # publishes found (published, missing, different, unknown), and when (migration 0010).
    ds_status: Mapped[str | None] = mapped_column(Text, nullable=True)
    ds_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OwnedHost(Base):
    """A host name of the pool's zone whose A records the service published (or is about
    to): recorded before the write, so nothing it published is ever orphaned, and trimmed
    once a read shows the records gone."""

    __tablename__ = "dns_owned_hosts"
    __table_args__ = (Index("ix_dns_owned_hosts_pool_domain_subdomain", "pool_domain", "subdomain"),)

    pool_domain: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text, primary_key=True)
    subdomain: Mapped[str] = mapped_column(Text)


class RegistrarAccount(Base):
    """When the registrar was last called with a key (identified by a hash, never the
    key), so pacing holds across processes; and until when it asked every caller with
    that key to wait (its throttle error)."""

    __tablename__ = "registrar_accounts"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_call_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Fencing token: raised by every holder of the registrar lock when it takes it; a pass
    # marks its work done only while the token is still its own.
    fence: Mapped[int] = mapped_column(BigInteger, server_default="0", default=0)


class DnsConflict(Base):
    """A name of the pool that its DNS, as last read, holds records (or a zone) at or
    under that are not the service's: not available to a tenant while they are there."""

    __tablename__ = "dns_conflicts"

    pool_domain: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str] = mapped_column(Text, primary_key=True)
    # What is there, for a person ("A www.shop 198.51.100.1", "zone shop.omani.works.").
    detail: Mapped[str] = mapped_column(Text)


class RateLimitCounter(Base):
    """A rate-limit window's hits, shared by every worker and replica (the limits
    library's storage on the service's own database). UNLOGGED on PostgreSQL (migration
    0006): a crash or failover empties it."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    hits: Mapped[int] = mapped_column(BigInteger)
    # Seconds since the epoch: the limits library's clock.
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class WebhookMessage(Base):
    """The outbox: one event for one endpoint, written in the transaction of the change
    that caused it, and marked once the endpoint took it (or given up after the retry
    schedule). Deleted past PDM_WEBHOOK_RETENTION whatever became of it."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # webhook-id: the same for every endpoint, retry, duplicate and replay of the event.
    msg_id: Mapped[str] = mapped_column(Text)
    endpoint: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    # What order is kept per: "pool/name" (an allocation), "pool" or "registrar:x/domain".
    subject: Mapped[str] = mapped_column(Text)
    pool_domain: Mapped[str] = mapped_column(Text)
    # The body exactly as signed and sent.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # What the deliverer reads: an endpoint's undelivered messages in order.
        Index(
            "ix_webhook_messages_endpoint_id_pending", "endpoint", "id",
            postgresql_where=text("delivered_at IS NULL AND failed_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL AND failed_at IS NULL"),
        ),
        # Order per subject: is an older message of the same subject still undelivered?
        Index(
            "ix_webhook_messages_endpoint_subject_id_pending", "endpoint", "subject", "id",
            postgresql_where=text("delivered_at IS NULL AND failed_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL AND failed_at IS NULL"),
        ),
        Index("ix_webhook_messages_created_at", "created_at"),
        Index("ix_webhook_messages_msg_id", "msg_id"),
    )


class WebhookEndpoint(Base):
    """What a configured endpoint told the service: gone (410: disabled until an operator
    enables it again) or busy (429/503 with Retry-After: paused until then)."""

    __tablename__ = "webhook_endpoints"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
