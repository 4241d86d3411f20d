"""Webhooks: the outbox (``webhook_messages``, one event for one endpoint, written in the
transaction of the change that caused it) and what endpoints told the service
(``webhook_endpoints``: disabled after a 410, paused after a 429).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import BigId, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PENDING = "delivered_at IS NULL AND failed_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "webhook_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("msg_id", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("pool_domain", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("failed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_messages"),
    )
    op.create_index("ix_webhook_messages_endpoint_id_pending", "webhook_messages", ["endpoint", "id"],
                    postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))
    op.create_index("ix_webhook_messages_endpoint_subject_id_pending", "webhook_messages",
                    ["endpoint", "subject", "id"], postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))
    op.create_index("ix_webhook_messages_created_at", "webhook_messages", ["created_at"])
    op.create_index("ix_webhook_messages_msg_id", "webhook_messages", ["msg_id"])
    op.create_table(
        "webhook_endpoints",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("paused_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_webhook_endpoints"),
    )


def downgrade() -> None:
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_webhook_messages_msg_id", table_name="webhook_messages")
    op.drop_index("ix_webhook_messages_created_at", table_name="webhook_messages")
    op.drop_index("ix_webhook_messages_endpoint_subject_id_pending", table_name="webhook_messages")
    op.drop_index("ix_webhook_messages_endpoint_id_pending", table_name="webhook_messages")
    op.drop_table("webhook_messages")
