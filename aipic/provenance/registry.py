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
PG_COMPACT_KEY = 0x61697063  # "aipc": the advisory lock held while compacting the fingerprint index

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
    sa.Column("code", sa.BigInteger),  # the value as a signed 64-bit integer (ix_fingerprints_code)
)
# The search index (aipic.provenance.fingerprint_index): codes packed per (part, value), and the pending codes that a
# record adds and compaction moves into the postings.
postings = sa.Table(
    "fingerprint_postings", metadata,
    sa.Column("part", sa.SmallInteger, primary_key=True),
    sa.Column("value", sa.Integer, primary_key=True),
    sa.Column("codes", sa.LargeBinary, nullable=False),
)
pending = sa.Table(
    "fingerprint_pending", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("code", sa.BigInteger, nullable=False),
    *(sa.Column(f"chunk{i}", sa.Integer, nullable=False) for i in range(index.PARTS)),
)
COMPACT_EVERY = 200  # records between compactions in one process (and one at start): the pending table stays small
COMPACT_BATCH = 100_000  # pending codes moved per transaction: SQLite's write lock is held a few seconds at most, so other writers wait (busy_timeout) rather than fail


def fingerprint_rows(output_id: str, variants: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """An output's fingerprints rows and their pending index rows: written in the output's own transaction."""
    rows, waiting = [], []
    for variant, value in variants.items():
        code = index.as_int(value)
        signed = index.as_signed(code)
        rows.append({"output_id": output_id, "variant": variant, "value": value, "code": signed})
        waiting.append({"code": signed, **{f"chunk{i}": chunk for i, chunk in enumerate(index.chunks(code))}})
    return rows, waiting


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
        elif self.engine.dialect.name == "postgresql":
            sa.event.listen(self.engine, "connect", _postgres_settings)
        self._since_compaction = 0
        if migrate:
            self.migrate()
            self._compact_quietly()  # what earlier processes (or a migration) left pending

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
                with self.engine.connect() as connection:
                    # pysqlite's default mode commits each CREATE/ALTER on its own, so a process killed in a migration's
                    # data step would leave new tables behind at the old revision; one explicit transaction makes the
                    # whole upgrade atomic (SQLite's DDL is transactional).
                    connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                    try:
                        yield connection
                    except BaseException:
                        connection.exec_driver_sql("ROLLBACK")
                        raise
                    connection.exec_driver_sql("COMMIT")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---- writing -------------------------------------------------------------------------------------------

    def record(self, entry: Entry, variants: dict | None = None) -> None:
        """Commit one output's record, its fingerprint variants and their pending index rows in one transaction.
        Recording the same id again (a retried worker) changes nothing."""
        values = dict(entry.__dict__)
        rows, waiting = fingerprint_rows(entry.id, variants or {"full": entry.fingerprint})
        try:
            with self.engine.begin() as connection:
                if connection.execute(sa.select(outputs.c.id).where(outputs.c.id == entry.id)).first() is not None:
                    return
                connection.execute(outputs.insert(), values)  # one compiled statement for every record (no .values(): it compiles anew)
                connection.execute(fingerprints.insert(), rows)
                connection.execute(pending.insert(), waiting)
        except sa.exc.IntegrityError:  # a concurrent retry won the race: the same output, already recorded
            log.info("output %s was already recorded", entry.id)
            return
        self._since_compaction += 1
        if self._since_compaction >= COMPACT_EVERY:
            self._compact_quietly()

    def _compact_quietly(self) -> None:
        """Compact; a failure (another process holding the write lock too long, a full disk) leaves the codes
        pending, where lookups still find them, and a later compaction moves them."""
        try:
            self.compact()
        except sa.exc.SQLAlchemyError as error:
            log.warning("compacting the fingerprint index failed (its codes stay pending and are still found): %s", type(error).__name__)

    def compact(self, batch: int = COMPACT_BATCH) -> int:
        """Move the pending codes into the postings (aipic.provenance.fingerprint_index), ``batch`` at a time, each
        batch in one transaction: a lookup sees every code exactly once before, during and after. A batch appends
        to each posting it touches in the database itself (nothing is read back), and the pending rows it takes are
        deleted by the same statement that returns them, so no code moves twice. Compactions take turns (SQLite: the
        first statement takes the write lock; PostgreSQL: an advisory lock, and a compaction that finds another
        running leaves the rows to it). Returns how many codes moved."""
        self._since_compaction = 0
        moved = 0
        postgres = self.engine.dialect.name == "postgresql"
        mark = "%s" if postgres else "?"
        append = "fingerprint_postings.codes || excluded.codes" if postgres else "CAST(fingerprint_postings.codes || excluded.codes AS BLOB)"  # byte for byte
        upsert = f"INSERT INTO fingerprint_postings (part, value, codes) VALUES ({mark}, {mark}, {mark}) ON CONFLICT (part, value) DO UPDATE SET codes = {append}"
        while True:  # the DB-API directly: SQLAlchemy's per-row parameter handling would cost more than the writes
            with self.engine.begin() as connection:
                if postgres and not connection.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PG_COMPACT_KEY}).scalar():
                    return moved
                rows = connection.exec_driver_sql(
                    f"DELETE FROM fingerprint_pending WHERE seq IN (SELECT seq FROM fingerprint_pending ORDER BY seq LIMIT {int(batch)}) "
                    "RETURNING code, chunk0, chunk1, chunk2").all()
                if not rows:
                    return moved
                table = np.array([tuple(row) for row in rows], dtype=np.int64)
                for part in range(index.PARTS):
                    connection.exec_driver_sql(upsert, [(part, value, codes) for value, codes in index.group(table[:, 0], table[:, 1 + part])])  # distinct codes per batch
                moved += len(rows)
                log.info("compacted %d fingerprint codes into the index", len(rows))

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
        id): exact, through the posting lists of aipic.provenance.fingerprint_index, nearest first. Each stage reads
        its postings and pending rows in one statement (one snapshot); rows are fetched for the nearest codes alone.
        ``stats`` (a dict) gets the candidates examined and the stages probed."""
        code = index.parse(fingerprint)
        query = index.as_signed(code)
        best_bits, best_codes = max_bits + 1, np.empty(0, dtype=np.int64)
        examined = stage = 0
        found = None
        with self.engine.connect() as connection:
            # Stage by stage, one statement each: reading stages 0 and 1 together saves a round trip but reads the 64
            # neighbouring postings even when stage 0 found the match, and near a popular picture they hold hundreds
            # of thousands of codes (measured at 10 M outputs on PostgreSQL: the slowest distance's p95 44 ms, against 16 ms).
            for stage in range(index.stages(max_bits)):
                statement, parameters = _stage_sql(index.probes(code, stage), self.engine.dialect.name == "postgresql")
                packed, loose = [], []
                for codes, one in connection.exec_driver_sql(statement, parameters):
                    if codes is not None:
                        packed.append(bytes(codes))
                    else:
                        loose.append(one)
                candidates = np.concatenate([index.unpack(packed), np.array(loose, dtype=np.int64)])
                examined += len(candidates)
                if len(candidates):
                    bits = index.distances(candidates, query)
                    nearest = int(bits.min())
                    if nearest < best_bits:
                        best_bits, best_codes = nearest, candidates[bits == nearest]
                    elif nearest == best_bits:
                        best_codes = np.concatenate([best_codes, candidates[bits == nearest]])
                if best_bits <= min(max_bits, index.complete_within(stage)):
                    break  # nothing unseen can be nearer
            if best_bits <= max_bits:  # the output with the smallest id among the nearest codes, in the same statement
                nearest_id = sa.select(sa.func.min(fingerprints.c.output_id)).where(fingerprints.c.code.in_(sorted(set(best_codes.tolist())))).scalar_subquery()
                row = connection.execute(sa.select(outputs).where(outputs.c.id == nearest_id)).mappings().first()
                found = Entry(**row) if row else None
        if stats is not None:
            stats.update(candidates=examined, stages=stage + 1)
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


def _stage_sql(values: list[list[int]], postgres: bool) -> tuple[str, dict]:
    """One stage of a lookup as one statement (one snapshot): the postings of each part's probed values, then the
    pending codes with those values. PostgreSQL gets each part's values as one array parameter (the same text for
    every lookup, so psycopg prepares it and the plan is reused); SQLite gets them as integer literals computed
    here (SQLAlchemy's expanding parameters cost more than the lookup itself for ~700 values)."""
    if postgres:
        wanted = [f"ANY(%(part{part})s)" for part in range(index.PARTS)]
        parameters = {f"part{part}": [int(value) for value in values[part]] for part in range(index.PARTS)}
    else:
        wanted = ["IN (" + ",".join(str(int(value)) for value in part) + ")" for part in values]
        parameters = {}
    blob = "BYTEA" if postgres else "BLOB"
    return " UNION ALL ".join(
        [f"SELECT codes, CAST(NULL AS BIGINT) AS code FROM fingerprint_postings WHERE part = {part} AND value {'= ' if postgres else ''}{wanted[part]}" for part in range(index.PARTS)]
        + [f"SELECT CAST(NULL AS {blob}), code FROM fingerprint_pending WHERE chunk{part} {'= ' if postgres else ''}{wanted[part]}" for part in range(index.PARTS)]), parameters


def _postgres_settings(connection, _record) -> None:
    """The registry's statements are small index lookups: starting parallel workers (a lookup stage's ~700 values
    make the planner choose them) or JIT-compiling costs ~20 ms, far more than the lookup."""
    cursor = connection.cursor()
    cursor.execute("SET max_parallel_workers_per_gather = 0")
    cursor.execute("SET jit = off")
    cursor.close()
    connection.commit()


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; several processes can write
    cursor.execute("PRAGMA busy_timeout=30000")  # a writer waits for another instead of failing
    cursor.execute("PRAGMA synchronous=FULL")  # each commit survives a crash or a power cut: nothing recorded is lost
    cursor.close()
