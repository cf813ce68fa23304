"""An indexed fingerprint search: each fingerprint's three substrings (21, 21 and 22 bits) in their own indexed
columns, and the code as a 64-bit integer (multi-index hashing: aipic.provenance.fingerprint_index). Fingerprints
recorded before this revision are split here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHUNK_BITS = (21, 21, 22)  # the same split as aipic.provenance.fingerprint_index (a migration does not import the package's code)
SHIFTS = (43, 22, 0)
BATCH = 20_000


def _columns(value: str) -> dict:
    code = int(value, 16)
    return {"code": code - (1 << 64) if code >= 1 << 63 else code,
            **{f"chunk{i}": (code >> shift) & ((1 << bits) - 1) for i, (shift, bits) in enumerate(zip(SHIFTS, CHUNK_BITS))}}


def upgrade() -> None:
    for name in ("code", "chunk0", "chunk1", "chunk2"):
        op.add_column("fingerprints", sa.Column(name, sa.BigInteger if name == "code" else sa.Integer, nullable=True))
    connection = op.get_bind()
    table = sa.table("fingerprints", sa.column("output_id"), sa.column("variant"), sa.column("value"),
                     sa.column("code"), sa.column("chunk0"), sa.column("chunk1"), sa.column("chunk2"))
    update = table.update().where(table.c.output_id == sa.bindparam("o"), table.c.variant == sa.bindparam("v")).values(
        code=sa.bindparam("code"), chunk0=sa.bindparam("chunk0"), chunk1=sa.bindparam("chunk1"), chunk2=sa.bindparam("chunk2"))
    rows = connection.execute(sa.select(table.c.output_id, table.c.variant, table.c.value)).all()
    for start in range(0, len(rows), BATCH):
        connection.execute(update, [{"o": o, "v": v, **_columns(value)} for o, v, value in rows[start : start + BATCH]])
    for i in range(3):
        op.create_index(f"ix_fingerprints_chunk{i}", "fingerprints", [f"chunk{i}", "code"])  # covering: a probe reads only the index


def downgrade() -> None:
    for i in range(3):
        op.drop_index(f"ix_fingerprints_chunk{i}", table_name="fingerprints")
    with op.batch_alter_table("fingerprints") as batch:
        for name in ("code", "chunk0", "chunk1", "chunk2"):
            batch.drop_column(name)
