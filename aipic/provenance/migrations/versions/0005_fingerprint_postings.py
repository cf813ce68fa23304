"""The fingerprint index as posting lists: one row per (part, value) holding its codes packed, plus a small pending
table that a record writes to and compaction empties (aipic.provenance.fingerprint_index). The substrings move out
of ``fingerprints``, which keeps the code, now indexed alone (it resolves the nearest codes to outputs). Every
existing fingerprint goes to the pending table here; the registry compacts it into postings when it next opens.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CHUNK_BITS = (21, 21, 22)  # the same split as aipic.provenance.fingerprint_index (a migration does not import the package's code)
SHIFTS = (43, 22, 0)
BATCH = 20_000


def upgrade() -> None:
    op.create_table(
        "fingerprint_postings",
        sa.Column("part", sa.SmallInteger, primary_key=True),
        sa.Column("value", sa.Integer, primary_key=True),
        sa.Column("codes", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "fingerprint_pending",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("code", sa.BigInteger, nullable=False),
        *(sa.Column(f"chunk{i}", sa.Integer, nullable=False) for i in range(3)),
    )
    for i in range(3):
        op.create_index(f"ix_fingerprint_pending_chunk{i}", "fingerprint_pending", [f"chunk{i}", "code"])
    if op.get_bind().dialect.name == "postgresql":  # packed codes do not compress: store them out of line as they are
        op.execute("ALTER TABLE fingerprint_postings ALTER COLUMN codes SET STORAGE EXTERNAL")
    op.execute("INSERT INTO fingerprint_pending (code, chunk0, chunk1, chunk2) SELECT code, chunk0, chunk1, chunk2 FROM fingerprints")
    for i in range(3):
        op.drop_index(f"ix_fingerprints_chunk{i}", table_name="fingerprints")
    for i in range(3):  # SQLite 3.35+ and PostgreSQL both drop a plain column in place
        op.execute(f"ALTER TABLE fingerprints DROP COLUMN chunk{i}")
    op.create_index("ix_fingerprints_code", "fingerprints", ["code"])


def downgrade() -> None:
    op.drop_index("ix_fingerprints_code", table_name="fingerprints")
    for i in range(3):
        op.add_column("fingerprints", sa.Column(f"chunk{i}", sa.Integer, nullable=True))
    connection = op.get_bind()
    table = sa.table("fingerprints", sa.column("output_id"), sa.column("variant"), sa.column("code"), *(sa.column(f"chunk{i}") for i in range(3)))
    update = table.update().where(table.c.output_id == sa.bindparam("o"), table.c.variant == sa.bindparam("v")).values(
        **{f"chunk{i}": sa.bindparam(f"c{i}") for i in range(3)})
    rows = connection.execute(sa.select(table.c.output_id, table.c.variant, table.c.code)).all()
    for start in range(0, len(rows), BATCH):
        connection.execute(update, [{"o": o, "v": v, **{f"c{i}": ((code & (2**64 - 1)) >> shift) & ((1 << bits) - 1) for i, (shift, bits) in enumerate(zip(SHIFTS, CHUNK_BITS))}}
                                    for o, v, code in rows[start : start + BATCH]])
    for i in range(3):
        op.create_index(f"ix_fingerprints_chunk{i}", "fingerprints", [f"chunk{i}", "code"])
    op.drop_table("fingerprint_pending")
    op.drop_table("fingerprint_postings")
