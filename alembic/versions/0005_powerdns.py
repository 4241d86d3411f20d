"""PowerDNS pools: the pool's own DS (what its registrar must publish), per pool.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pool_zones") as batch:
        batch.add_column(sa.Column("ds_records", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pool_zones") as batch:
        batch.drop_column("ds_records")
