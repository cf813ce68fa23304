"""The registry's fingerprint search at scale: fill a home's registry with N synthetic outputs, then measure.

    python bench/bench_registry.py --outputs 1000000 --home /tmp/reg [--postgres] [--out bench/results/<date>-cpu-registry.json]

* Fill: N outputs in bulk (three fingerprints each — the whole picture and two crops — as aipic records them),
  with the substrings the index needs. A fifth of the codes are real pictures' perceptual hashes (scikit-image's
  samples and their crops, resizes and recompressions, each perturbed by a few bits: real hashes cluster, which
  defeats naive substring splits), the rest random. Then a few planted near-duplicates of known codes.
* Insert rate: the bulk fill (rows a second), and ``Registry.record`` one output at a time as the app records.
* Lookups: p50/p95 per fingerprint lookup for hits at each distance 0–8 (a planted code, flipped that many bits)
  and for misses, the candidates examined, recall of the planted near-duplicates; peak memory of this process.
* ``--postgres`` starts a throw-away PostgreSQL 15 cluster on 127.0.0.1 (as the tests do) and runs the same.
* ``--check-cli``: after the fill, ``aipic generate`` with that home records a real output (tiny models), and
  ``aipic verify`` recognises a stripped copy of it through the filled registry.

Writes JSON (one run: every ratio and figure measured in it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aipic.provenance.fingerprint import MATCH_BITS, fingerprint  # noqa: E402
from aipic.provenance import fingerprint_index as index  # noqa: E402
from aipic.provenance.registry import COMPACT_EVERY, Registry  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
BATCH = 50_000
BULK_CACHE_KB = 4_000_000
BULK_COMPACTION = 10_000_000  # pending codes per compaction after a bulk fill: each batch rewrites every posting it touches
LOOKUPS_PER_DISTANCE = 40


def real_picture_codes() -> list[int]:
    from PIL import Image
    from skimage import data as samples

    codes = []
    for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "page", "horse", "moon", "text", "coins", "cat", "clock", "immunohistochemistry", "retina"):
        try:
            array = getattr(samples, name)()
        except Exception:  # noqa: BLE001 - a sample that needs a download
            continue
        picture = Image.fromarray(np.asarray(array, dtype=np.uint8) if array.dtype == bool else array).convert("RGB")
        variants = [picture, picture.resize((picture.width // 2, picture.height // 2)), picture.crop((10, 10, picture.width - 10, picture.height - 10))]
        for quality in (20, 50, 80):
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=quality)
            variants.append(Image.open(io.BytesIO(buffer.getvalue())))
        codes += [int(fingerprint(variant), 16) for variant in variants]
    return codes


def synthetic_codes(n: int, rng, real: list[int]) -> np.ndarray:
    """n codes: a fifth near real pictures' hashes (each flipped in 0–12 random bits), the rest random."""
    codes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    clustered = n // 5
    bases = np.array(real, dtype=np.uint64)[rng.integers(0, len(real), size=clustered)]
    flips = np.zeros(clustered, dtype=np.uint64)
    for _ in range(12):
        on = rng.random(clustered) < 0.5
        flips ^= np.where(on, np.left_shift(np.uint64(1), rng.integers(0, 64, size=clustered).astype(np.uint64)), np.uint64(0))
    codes[:clustered] = bases ^ flips
    return codes


def flip(code: int, bits: int, rng) -> int:
    for position in rng.choice(64, size=bits, replace=False):
        code ^= 1 << int(position)
    return code


def fill(measured: Registry, n: int, rng, real: list[int], first: int = 0) -> dict:
    """Outputs number ``first`` to ``n``, three fingerprints each, in batches through the DB-API (as a bulk import
    would): their rows and their pending index rows, then one compaction moves the codes into the postings. On
    SQLite the bulk work gets its own connections with a page cache that holds the indexes being filled (SQLite's
    default is 2 MB); the lookups are measured with the registry's own settings."""
    from aipic.provenance.registry import outputs

    registry = Registry(measured.url, migrate=False)
    if registry.engine.dialect.name == "sqlite":
        sa.event.listen(registry.engine, "connect", lambda connection, _record: connection.execute(f"PRAGMA cache_size=-{BULK_CACHE_KB}"))
    now = datetime.datetime.now(datetime.timezone.utc)
    start = time.perf_counter()
    rows = 0
    for offset in range(first, n, BATCH):
        with registry.engine.begin() as connection:  # a transaction per batch: SQLite's write-ahead log is checkpointed between them
            size = min(BATCH, n - offset)
            full = synthetic_codes(size, rng, real)
            crops = [full ^ np.left_shift(np.uint64(1), rng.integers(0, 64, size=size).astype(np.uint64)) for _ in range(2)]  # crops: a bit or two away
            ids = [f"{offset + i:032x}" for i in range(size)]
            connection.execute(outputs.insert(), [
                {"id": output_id, "created_at": now, "task": "text-to-image", "model": "bench", "mime": "image/png", "file_sha256": output_id * 2,
                 "manifest_label": f"urn:c2pa:{output_id}", "manifest_store": b"", "watermark_id": None, "fingerprint": f"{int(code):016x}", "path": None,
                 "file_deleted_at": None} for output_id, code in zip(ids, full)])
            mark = "%s" if registry.engine.dialect.name == "postgresql" else "?"
            for variant, values in (("full", full), ("crop90", crops[0]), ("crop80", crops[1])):
                signed = values.view(np.int64)
                parts = index.chunk_arrays(signed)
                connection.exec_driver_sql(f"INSERT INTO fingerprints (output_id, variant, value, code) VALUES ({mark}, {mark}, {mark}, {mark})",
                                           [(output_id, variant, f"{int(code):016x}", int(value)) for output_id, code, value in zip(ids, values, signed)])
                connection.exec_driver_sql(f"INSERT INTO fingerprint_pending (code, chunk0, chunk1, chunk2) VALUES ({mark}, {mark}, {mark}, {mark})",
                                           list(zip(signed.tolist(), *(part.tolist() for part in parts))))
            rows += size * 7
            if offset and offset % (10 * BATCH) == 0:
                print(f"  {offset:,} outputs", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    moved = registry.compact(batch=BULK_COMPACTION)
    compaction = time.perf_counter() - start
    n -= first
    if registry.engine.dialect.name == "postgresql":  # statistics, and the visibility map index-only scans need
        with registry.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    registry.close()
    return {"seconds": seconds, "outputs_per_s": n / seconds, "rows_per_s": rows / seconds, "compaction_s": compaction, "codes_compacted": moved}


def compaction_cost(registry: Registry, rng, count: int = COMPACT_EVERY - 1) -> dict:
    """What the app pays at this size: ``count`` outputs recorded one by one (pending; fewer than COMPACT_EVERY, so
    Registry.record does not compact on its own), then one compaction, timed alone."""
    from aipic.provenance.registry import Entry

    now = datetime.datetime.now(datetime.timezone.utc)
    registry.compact()  # nothing pending, and the registry's count of records since a compaction starts again
    stamp = uuid.uuid4().hex[:8]  # new ids on every run: a seeded id recorded by an earlier run would be a retried record (nothing pending)
    start = time.perf_counter()
    for n in range(count):
        code = int(rng.integers(0, 2**63))
        output_id = f"c{stamp}{n:023x}"
        registry.record(Entry(output_id, now, "text-to-image", "bench", "image/png", output_id * 2, f"urn:c2pa:{output_id}", b"", None, f"{code:016x}", None, None),
                        {"full": f"{code:016x}", "crop90": f"{code ^ 1:016x}", "crop80": f"{code ^ 2:016x}"})
    recording = time.perf_counter() - start
    start = time.perf_counter()
    moved = registry.compact()
    seconds = time.perf_counter() - start
    return {"records": count, "record_ms": recording / count * 1000, "codes": moved, "compaction_ms": seconds * 1000,
            "compaction_ms_per_record": seconds * 1000 / count}


def insert_overhead(folder: Path, rng, count: int = 3 * COMPACT_EVERY, rounds: int = 5) -> dict:
    """The median of ``rounds`` alternating measurements of insert_overhead_once (disk timing is noisy)."""
    runs = [insert_overhead_once(folder / str(n), rng, count) for n in range(rounds)]
    before = float(np.median([r["before_per_s"] for r in runs]))
    after = float(np.median([r["after_per_s"] for r in runs]))
    return {"before_per_s": before, "after_per_s": after, "slowdown": before / after - 1, "rounds": runs}


def insert_overhead_once(folder: Path, rng, count: int) -> dict:
    """Registry.record (one transaction per output, three fingerprints, a compaction every COMPACT_EVERY records)
    into an empty registry with the index, against the same writes into a registry at the schema before any index
    (0003: no substrings, postings or pending codes)."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from aipic.provenance.registry import MIGRATIONS, Entry, outputs

    now = datetime.datetime.now(datetime.timezone.utc)
    entries = []
    for n in range(count):
        code = int(rng.integers(0, 2**63))
        output_id = f"r{n:031x}"
        entries.append((Entry(output_id, now, "text-to-image", "bench", "image/png", output_id * 2, f"urn:c2pa:{output_id}", b"", None, f"{code:016x}", None, None),
                        {"full": f"{code:016x}", "crop90": f"{code ^ 1:016x}", "crop80": f"{code ^ 2:016x}"}))
    folder.mkdir(parents=True, exist_ok=True)
    old = Registry(f"sqlite:///{folder / 'before.sqlite3'}", migrate=False)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    plain = sa.table("fingerprints", sa.column("output_id"), sa.column("variant"), sa.column("value"))
    start = time.perf_counter()
    for entry, variants in entries:  # what Registry.record did before the index, step for step
        with old.engine.begin() as connection:
            if connection.execute(sa.select(outputs.c.id).where(outputs.c.id == entry.id)).first() is not None:
                continue
            connection.execute(outputs.insert().values(**entry.__dict__))
            connection.execute(plain.insert(), [{"output_id": entry.id, "variant": name, "value": value} for name, value in variants.items()])
    before = count / (time.perf_counter() - start)
    old.close()
    new = Registry(f"sqlite:///{folder / 'after.sqlite3'}")
    start = time.perf_counter()
    for entry, variants in entries:
        new.record(entry, variants)
    after = count / (time.perf_counter() - start)
    new.close()
    return {"before_per_s": before, "after_per_s": after, "slowdown": before / after - 1}


def planted(registry: Registry, rng, real: list[int], count: int) -> tuple[list[tuple[str, int]], float]:
    """Outputs recorded through Registry.record (the app's path) after the fill: their codes are the ones looked up."""
    from aipic.provenance.registry import Entry

    now = datetime.datetime.now(datetime.timezone.utc)
    made = []
    start = time.perf_counter()
    for n in range(count):
        code = int(real[n % len(real)]) ^ (1 << int(rng.integers(0, 64))) if n % 2 else int(rng.integers(0, 2**63))
        output_id = f"p{n:031x}"
        value = f"{code:016x}"
        registry.record(Entry(output_id, now, "text-to-image", "bench", "image/png", output_id * 2, f"urn:c2pa:{output_id}", b"", None, value, None, None),
                        {"full": value, "crop90": f"{code ^ 1:016x}", "crop80": f"{code ^ 2:016x}"})
        made.append((output_id, code))
    return made, count / (time.perf_counter() - start)


def lookups(registry: Registry, made: list, rng) -> dict:
    out: dict = {"by_distance": {}, "misses": {}}
    recalled = total = 0
    for bits in range(0, MATCH_BITS + 1):
        times, candidates = [], []
        for _output_id, code in made[:LOOKUPS_PER_DISTANCE]:
            query = flip(code, bits, rng)
            stats: dict = {}
            start = time.perf_counter()
            found = registry.nearest_fingerprint(f"{query:016x}", MATCH_BITS, stats)
            times.append(time.perf_counter() - start)
            candidates.append(stats["candidates"])
            total += 1
            recalled += bool(found) and found[1] <= bits  # the planted output, or another at least as near
        out["by_distance"][bits] = summary(times, candidates)
    times, candidates = [], []
    for _ in range(LOOKUPS_PER_DISTANCE):
        stats = {}
        start = time.perf_counter()
        registry.nearest_fingerprint(f"{int(rng.integers(0, 2**63)):016x}", MATCH_BITS, stats)
        times.append(time.perf_counter() - start)
        candidates.append(stats["candidates"])
    out["misses"] = summary(times, candidates)
    every = [t for entry in out["by_distance"].values() for t in entry["_times"]] + out["misses"]["_times"]
    out["all"] = {"p50_ms": float(np.percentile(every, 50) * 1000), "p95_ms": float(np.percentile(every, 95) * 1000)}
    for entry in [*out["by_distance"].values(), out["misses"]]:
        entry.pop("_times")
    out["recall"] = recalled / total
    return out


def summary(times: list, candidates: list) -> dict:
    return {"p50_ms": float(np.percentile(times, 50) * 1000), "p95_ms": float(np.percentile(times, 95) * 1000),
            "candidates_median": float(np.median(candidates)), "candidates_max": int(max(candidates)), "_times": times}


@contextlib.contextmanager
def postgres(keep: str | None = None):
    """A PostgreSQL 15 cluster on 127.0.0.1: throw-away, or in ``keep`` (made there the first time and reused
    after, e.g. to measure the lookups again on a filled registry)."""
    folder = os.path.abspath(keep) if keep else tempfile.mkdtemp(prefix="aipic-bench-pg-")
    os.makedirs(folder, exist_ok=True)
    data = os.path.join(folder, "data")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    if not os.path.exists(os.path.join(data, "PG_VERSION")):
        subprocess.run([*as_postgres, f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_postgres, f"{PG_BIN}/pg_ctl", "-D", data, "-l", os.path.join(folder, "log"), "-w", "-o", f"-p {port} -k {folder} -h 127.0.0.1 -c shared_buffers=1GB -c maintenance_work_mem=1GB", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast" if keep else "immediate", "stop"], capture_output=True)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def check_cli(home: Path, registry_url: str | None) -> dict:
    """aipic generate with this home records a real output; aipic verify recognises a stripped copy of it."""
    from PIL import Image

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AIPIC_MODELS": "tiny"}
    if registry_url:
        env["AIPIC_REGISTRY_URL"] = registry_url
    aipic = [sys.executable, "-m", "aipic"]
    made = subprocess.run([*aipic, "generate", "a lighthouse at dusk", "--width", "256", "--height", "256", "--steps", "2", "--home", str(home), "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    path = json.loads(made.stdout)["outputs"][0]["path"]
    stripped = home / "stripped-copy.png"
    Image.open(path).convert("RGB").save(stripped)
    start = time.perf_counter()
    verified = subprocess.run([*aipic, "verify", str(stripped), "--home", str(home), "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    seconds = time.perf_counter() - start
    result = json.loads(verified.stdout)[str(stripped)]
    resized = home / "resized-copy.png"  # the watermark does not survive resizing: the fingerprint must find it
    Image.open(path).convert("RGB").resize((200, 200)).save(resized)
    by_print = json.loads(subprocess.run([*aipic, "verify", str(resized), "--home", str(home), "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600).stdout)[str(resized)]
    return {"recognised": bool(result.get("recovered")), "matched_by": (result.get("recovered") or {}).get("matched_by"), "verify_seconds": seconds,
            "resized_recognised": bool(by_print.get("recovered")), "resized_matched_by": (by_print.get("recovered") or {}).get("matched_by")}


def database_gb(registry: Registry) -> float:
    """The registry's size on disk: the SQLite file (and its WAL), or PostgreSQL's database."""
    if registry.engine.dialect.name == "postgresql":
        with registry.engine.connect() as connection:
            return connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar() / 1e9
    database = Path(registry.engine.url.database)
    return sum(path.stat().st_size for path in (database, Path(f"{database}-wal")) if path.exists()) / 1e9


def run(url: str, n: int, rng, real: list[int], home: Path | None, check: bool, sizes: list[int], measure_only: bool = False) -> dict:
    """Fill in steps (each size in ``sizes``, then n) and measure the lookups at each, in this one run. With
    ``measure_only``, the registry was filled by an earlier run: only the lookups are measured again."""
    registry = Registry(url)
    if measure_only:
        from aipic.provenance.registry import outputs

        with registry.engine.connect() as connection:
            made = [(row.id, int(row.fingerprint, 16)) for row in connection.execute(
                sa.select(outputs.c.id, outputs.c.fingerprint).where(outputs.c.id.like("p%")).order_by(outputs.c.id))]
        result = {"outputs": n, "fingerprints": 3 * n, "measured_again": True, "lookups": lookups(registry, made, rng), "database_gb": database_gb(registry),
                  "compaction": compaction_cost(registry, rng)}
        registry.close()
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result
    made, record_per_s = planted(registry, rng, real, LOOKUPS_PER_DISTANCE)  # planted first: they are in the registry at every size
    steps, filled_to = {}, 0
    for size in [*sorted(size for size in sizes if size < n), n]:
        filled = fill(registry, size, rng, real, filled_to)
        filled_to = size
        steps[size] = {"outputs": size, "fingerprints": 3 * size, "fill": filled, "lookups": lookups(registry, made, rng), "database_gb": database_gb(registry),
                       "compaction": compaction_cost(registry, rng)}
        print(f"  {size:,}: {json.dumps(steps[size]['lookups']['all'])}", file=sys.stderr, flush=True)
    result = {"outputs": n, "fingerprints": 3 * n, "record_per_s": record_per_s, "sizes": steps, "lookups": steps[n]["lookups"], "fill": steps[n]["fill"]}
    if len(steps) > 1:
        sizes_done = sorted(steps)
        result["growth"] = [{"from": a, "to": b, "p95_ratio": steps[b]["lookups"]["all"]["p95_ms"] / steps[a]["lookups"]["all"]["p95_ms"]}
                            for a, b in zip(sizes_done, sizes_done[1:])]
    registry.close()
    if check and home is not None:
        result["cli"] = check_cli(home, None if url.startswith("sqlite") else url)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=int, required=True, help="synthetic outputs to fill the registry with (three fingerprints each)")
    parser.add_argument("--home", required=True, help="the aipic home whose registry is filled (its registry.sqlite3); made if missing")
    parser.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL 15 cluster (started and removed here)")
    parser.add_argument("--postgres-only", action="store_true", help="only PostgreSQL")
    parser.add_argument("--postgres-dir", default=None, help="keep the PostgreSQL cluster in this folder (made if missing, reused if there: with --measure-only)")
    parser.add_argument("--check-cli", action="store_true", help="then aipic generate and verify with that home (tiny models)")
    parser.add_argument("--sizes", default="", help="also measure at these sizes on the way (comma-separated, e.g. 100000,1000000): growth within one run")
    parser.add_argument("--measure-only", action="store_true", help="the home's registry is already filled (an earlier run): measure the lookups only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON here")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    real = real_picture_codes()
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        overhead = insert_overhead(Path(scratch), rng)
    report = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores (this bench runs one process)",
              "method": "multi-index hashing: substrings of 21/21/22 bits kept as posting lists (packed codes per value) plus pending rows, probed nearest-first within 2 bits each, exact check after", "real_picture_codes": len(real),
              "radius_bits": MATCH_BITS, "insert_overhead_sqlite": overhead, "results": {}}
    if not args.postgres_only:
        report["results"]["sqlite"] = run(f"sqlite:///{home / 'registry.sqlite3'}", args.outputs, rng, real, home, args.check_cli, sizes, args.measure_only)
        print(json.dumps(report["results"]["sqlite"]["lookups"]["all"]), file=sys.stderr)
    if args.postgres or args.postgres_only:
        with postgres(args.postgres_dir) as url:
            pg_home = home / "pg-home"
            pg_home.mkdir(exist_ok=True)
            report["results"]["postgresql"] = run(url, args.outputs, rng, real, pg_home, args.check_cli, sizes, args.measure_only)
            print(json.dumps(report["results"]["postgresql"]["lookups"]["all"]), file=sys.stderr)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
