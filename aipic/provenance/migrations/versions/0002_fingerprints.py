"""Several fingerprints per output (the whole picture and centred crops), so cropped copies are recognised.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fingerprints",
        sa.Column("output_id", sa.String(32), sa.ForeignKey("outputs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("variant", sa.String(16), primary_key=True),  # "full", "crop90", "crop80"
        sa.Column("value", sa.String(16), nullable=False),
    )
    # Outputs recorded before this revision: their whole-picture fingerprint.
    op.execute("INSERT INTO fingerprints (output_id, variant, value) SELECT id, 'full', fingerprint FROM outputs")


def downgrade() -> None:
    op.drop_table("fingerprints")
