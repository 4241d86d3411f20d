"""registrar_accounts.paused_until: the registrar asked every caller with this key to wait.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

from pdm_app.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registrar_accounts") as batch:
        batch.add_column(sa.Column("paused_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registrar_accounts") as batch:
        batch.drop_column("paused_until")
