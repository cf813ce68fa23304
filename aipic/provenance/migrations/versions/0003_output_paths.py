"""An index on outputs.path: the app checks at start that every file in its output folder is recorded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outputs_path", "outputs", ["path"])


def downgrade() -> None:
    op.drop_index("ix_outputs_path", table_name="outputs")
