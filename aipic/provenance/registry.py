"""The provenance registry: every signed output is recorded before anyone gets it, and the record outlives the file.

SQLite by default (``<home>/registry.sqlite3``, WAL mode, safe for several writers); a SQLAlchemy URL
(Settings.registry_url, ``AIPIC_REGISTRY_URL``, e.g. ``postgresql+psycopg://…``) selects PostgreSQL for several hosts. The schema is
managed by Alembic migrations that ship inside the package and run under a lock when several processes start.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from aipic.common.errors import ConfigError
from aipic.common.settings import Settings
from aipic.provenance import fingerprint_index as index

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PG_LOCK_KEY = 0x61697069  # "aipi": the advisory lock held while migrating

metadata = sa.MetaData()
outputs = sa.Table(  # mirrors migrations/versions; the migrations create it
    "outputs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("mime", sa.String(32), nullable=False),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("manifest_label", sa.String(200), nullable=False),
    sa.Column("manifest_store", sa.LargeBinary, nullable=False),
    sa.Column("watermark_id", sa.String(64)),
    sa.Column("fingerprint", sa.String(16), nullable=False),
    sa.Column("path", sa.Text),
    sa.Column("file_deleted_at", sa.DateTime(timezone=True)),
)


fingerprints = sa.Table(
    "fingerprints", metadata,
    sa.Column("output_id", sa.String(32), primary_key=True),
    sa.Column("variant", sa.String(16), primary_key=True),
    sa.Column("value", sa.String(16), nullable=False),
    sa.Column("code", sa.BigInteger),  # the value as a signed 64-bit integer
    sa.Column("chunk0", sa.Integer),  # its substrings for the multi-index search (fingerprint_index), each indexed
    sa.Column("chunk1", sa.Integer),  # with the code (ix_fingerprints_chunk0 … on (chunkN, code)): probes read only the index
    sa.Column("chunk2", sa.Integer),
)


def fingerprint_row(output_id: str, variant: str, value: str) -> dict:
    """A fingerprints row with its indexed substrings: written in the same transaction as its output."""
    code = index.as_int(value)
    return {"output_id": output_id, "variant": variant, "value": value, "code": index.as_signed(code),
            **{f"chunk{i}": chunk for i, chunk in enumerate(index.chunks(code))}}


@dataclass
class Entry:
    id: str
    created_at: datetime.datetime
    task: str
    model: str
    mime: str
    file_sha256: str
    manifest_label: str
    manifest_store: bytes
    watermark_id: str | None
    fingerprint: str
    path: str | None
    file_deleted_at: datetime.datetime | None


class Registry:
    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        try:
            self.engine = sa.create_engine(url, future=True, pool_pre_ping=True)
        except Exception as error:  # noqa: BLE001 - a bad URL or a missing driver
            raise ConfigError(f"Cannot use the registry database {sa.engine.make_url(url).render_as_string(hide_password=True) if '://' in url else url!r}: {error}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.migrate()

    @classmethod
    def for_home(cls, home: str | Path) -> "Registry":
        Path(home).mkdir(parents=True, exist_ok=True)
        return cls(Settings(home=Path(home)).registry)

    # ---- schema --------------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest revision, holding a lock so concurrent starts do it once."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self._migration_lock() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001
            raise ConfigError(f"The registry database could not be prepared: {type(error).__name__}: {error}") from None

    @contextlib.contextmanager
    def _migration_lock(self):
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as connection:
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
                yield connection
            return
        database = self.engine.url.database
        lock_path = Path(f"{database}.migrate-lock") if database and database != ":memory:" else None
        if lock_path is None:
            with self.engine.begin() as connection:
                yield connection
            return
        import fcntl

        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with self.engine.begin() as connection:
                    yield connection
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---- writing -------------------------------------------------------------------------------------------

    def record(self, entry: Entry, variants: dict | None = None) -> None:
        """Commit one output's record (and its fingerprint variants) in one transaction. Recording the same id
        again (a retried worker) changes nothing."""
        values = dict(entry.__dict__)
        variants = variants or {"full": entry.fingerprint}
        try:
            with self.engine.begin() as connection:
                if connection.execute(sa.select(outputs.c.id).where(outputs.c.id == entry.id)).first() is not None:
                    return
                connection.execute(outputs.insert().values(**values))
                connection.execute(fingerprints.insert(), [fingerprint_row(entry.id, name, value) for name, value in variants.items()])
        except sa.exc.IntegrityError:  # a concurrent retry won the race: the same output, already recorded
            log.info("output %s was already recorded", entry.id)

    def mark_deleted(self, ids: list[str], when: datetime.datetime | None = None) -> None:
        when = when or datetime.datetime.now(datetime.timezone.utc)
        with self.engine.begin() as connection:
            connection.execute(outputs.update().where(outputs.c.id.in_(ids)).values(file_deleted_at=when))

    # ---- reading -------------------------------------------------------------------------------------------

    def _first(self, condition) -> Entry | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(outputs).where(condition)).mappings().first()
        return Entry(**row) if row else None

    def get(self, output_id: str) -> Entry | None:
        return self._first(outputs.c.id == output_id)

    def by_sha256(self, sha256: str) -> Entry | None:
        return self._first(outputs.c.file_sha256 == sha256)

    def by_watermark(self, watermark_id: str) -> Entry | None:
        return self._first(outputs.c.watermark_id == watermark_id)

    def nearest_fingerprint(self, fingerprint: str, max_bits: int, stats: dict | None = None) -> tuple[Entry, int] | None:
        """The recorded output whose fingerprint is closest to this one, if within ``max_bits`` (ties: the smallest
        id): exact, through the substring indexes (aipic.provenance.fingerprint_index), nearest first. Each index
        holds (substring, code), so a probe reads only the index; rows are fetched for the nearest codes alone.
        ``stats`` (a dict) gets the candidates examined and the stages probed."""
        query = index.as_int(fingerprint)
        signed_query = index.as_signed(query)
        columns = (fingerprints.c.chunk0, fingerprints.c.chunk1, fingerprints.c.chunk2)
        best_bits, best_codes = max_bits + 1, set()
        examined = stage = 0
        postgres = self.engine.dialect.name == "postgresql"
        with self.engine.connect() as connection:
            for stage in range(index.stages(max_bits)):
                for column, values in zip(columns, index.probes(query, stage)):
                    select = sa.select(fingerprints.c.code).where(column.in_(values))
                    if postgres:  # the exact check in the server: only codes within the radius come back
                        select = select.where(sa.text("bit_count((fingerprints.code # :query)::bit(64)) <= :max_bits").bindparams(query=signed_query, max_bits=max_bits))
                    codes = np.fromiter(connection.execute(select).scalars(), dtype=np.int64)
                    examined += len(codes)
                    if not len(codes):
                        continue
                    bits = np.bitwise_count(np.bitwise_xor(codes, np.int64(signed_query)).view(np.uint64))  # unsigned: a signed count is of |x|
                    nearest = int(bits.min())
                    if nearest < best_bits:
                        best_bits, best_codes = nearest, set(codes[bits == nearest].tolist())
                    elif nearest == best_bits:
                        best_codes |= set(codes[bits == nearest].tolist())
                if best_bits <= min(max_bits, index.complete_within(stage)):
                    break  # nothing unseen can be nearer
            best_id = None
            if best_bits <= max_bits:
                chunk0 = {index.chunks(code & (2**64 - 1))[0] for code in best_codes}
                best_id = connection.execute(sa.select(sa.func.min(fingerprints.c.output_id)).where(
                    fingerprints.c.chunk0.in_(chunk0), fingerprints.c.code.in_(best_codes))).scalar()
        if stats is not None:
            stats.update(candidates=examined, stages=stage + 1)
        found = self.get(best_id) if best_id else None
        return (found, best_bits) if found is not None else None

    def known_paths(self, paths: list[str]) -> set[str]:
        """Those of these file paths that a recorded output has (indexed: the app checks its folder at start)."""
        if not paths:
            return set()
        with self.engine.connect() as connection:
            return set(connection.execute(sa.select(outputs.c.path).where(outputs.c.path.in_(paths))).scalars())

    def older_than(self, cutoff: datetime.datetime) -> list[Entry]:
        """Outputs whose file is still on disk and was made before ``cutoff`` (retention)."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(outputs).where(outputs.c.created_at < cutoff, outputs.c.file_deleted_at.is_(None))).mappings().all()
        return [Entry(**row) for row in rows]

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(outputs)).scalar_one()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; several processes can write
    cursor.execute("PRAGMA busy_timeout=30000")  # a writer waits for another instead of failing
    cursor.execute("PRAGMA synchronous=FULL")  # each commit survives a crash or a power cut: nothing recorded is lost
    cursor.close()
