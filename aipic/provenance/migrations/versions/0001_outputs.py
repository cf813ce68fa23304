"""The outputs table: one row per signed output, kept after its file is deleted.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outputs",
        sa.Column("id", sa.String(32), primary_key=True),  # the output's id: also the idempotency key of a retried worker
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("mime", sa.String(32), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False, index=True),
        sa.Column("manifest_label", sa.String(200), nullable=False),
        sa.Column("manifest_store", sa.LargeBinary, nullable=False),  # the whole C2PA manifest store (JUMBF)
        sa.Column("watermark_id", sa.String(64), nullable=True, index=True),
        sa.Column("fingerprint", sa.String(16), nullable=False),  # 64-bit perceptual hash (pHash), hex
        sa.Column("path", sa.Text, nullable=True),
        sa.Column("file_deleted_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("outputs")
