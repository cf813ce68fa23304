"""The provenance registry on real databases (SQLite, and a PostgreSQL server the test starts), and recovery of
stripped copies by their fingerprint."""

import datetime
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy import inspect as sa_inspect

from aipic.common.settings import Settings
from aipic.generation.requests import GenerationRequest
from aipic.pipeline import AipicPipeline
from aipic.provenance import publish
from aipic.provenance.registry import Entry, Registry
from bench.bench_registry import real_picture_codes
from conftest import free_port, make_image

PG_BIN = "/usr/lib/postgresql/15/bin"


def entry(n: int, fingerprint: str = "0123456789abcdef") -> Entry:
    return Entry(
        id=f"{n:032x}", created_at=datetime.datetime.now(datetime.timezone.utc), task="text-to-image", model="tiny-random",
        mime="image/png", file_sha256=hashlib.sha256(str(n).encode()).hexdigest(), manifest_label=f"urn:c2pa:{n}",
        manifest_store=b"store", watermark_id=None, fingerprint=fingerprint, path=f"/x/{n}.png", file_deleted_at=None,
    )


def _upgrade(connection, revision: str) -> None:
    """Bring a registry's schema to an earlier revision (to test what migrations do with its rows)."""
    from alembic import command
    from alembic.config import Config

    from aipic.provenance.registry import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL 15 cluster on 127.0.0.1 (initdb and pg_ctl refuse to run as root: run as postgres)."""
    if not os.path.exists(f"{PG_BIN}/initdb"):
        pytest.skip("PostgreSQL is not installed")
    folder = tempfile.mkdtemp(prefix="aipic-pg-", dir="/tmp")
    data, port = os.path.join(folder, "data"), free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    subprocess.run([*as_postgres, f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    subprocess.run([*as_postgres, f"{PG_BIN}/pg_ctl", "-D", data, "-l", os.path.join(folder, "log"), "-w", "-o", f"-p {port} -k {folder} -h 127.0.0.1", "start"], check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    base = request.getfixturevalue("postgres_url")
    registry = Registry(base)
    with registry.engine.begin() as connection:  # a clean table for each test
        connection.exec_driver_sql("DELETE FROM outputs")
    registry.close()
    return base


@pytest.mark.slow
def test_records_survive_a_restart_and_a_retried_record_is_not_duplicated(url):
    first = Registry(url)
    first.record(entry(1))
    first.record(entry(1))  # a retried worker: same id
    first.close()
    again = Registry(url)
    assert again.count() == 1 and again.get(f"{1:032x}").manifest_label == "urn:c2pa:1"
    again.close()


def test_concurrent_writers_lose_nothing(url):
    registries = [Registry(url) for _ in range(4)]
    errors = []

    def write(number, registry):
        try:
            for n in range(25):
                registry.record(entry(number * 1000 + n))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i, r)) for i, r in enumerate(registries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and registries[0].count() == 100
    for registry in registries:
        registry.close()


@pytest.mark.slow
def test_processes_starting_together_migrate_once(url):
    code = "import sys; from aipic.provenance.registry import Registry; Registry(sys.argv[1]).close(); print('ok')"
    starts = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in starts]
    assert all(out.strip() == "ok" for out, _ in outputs), [err for _, err in outputs]


def test_a_registry_from_the_first_schema_is_migrated_with_its_data(tmp_path):
    """Revision 0001 had one fingerprint per output; 0002 adds the crop variants and carries the old ones over."""


    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old = Registry(url, migrate=False)
    with old.engine.begin() as connection:
        _upgrade(connection, "0001")
        values = dict(entry(7, "00000000000000ff").__dict__)
        connection.exec_driver_sql(
            "INSERT INTO outputs (id, created_at, task, model, mime, file_sha256, manifest_label, manifest_store, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (values["id"], values["created_at"].isoformat(), "text-to-image", "m", "image/png", values["file_sha256"], "urn:c2pa:7", b"s", "00000000000000ff"),
        )
    old.close()
    upgraded = Registry(url)
    found, bits = upgraded.nearest_fingerprint("00000000000000fe", 8)
    assert found.id == f"{7:032x}" and bits == 1
    upgraded.close()


def test_nearest_fingerprint_within_the_limit_only(url):
    registry = Registry(url)
    registry.record(entry(1, "ffffffffffffffff"))
    registry.record(entry(2, "0000000000000000"))
    found, bits = registry.nearest_fingerprint("00000000000000ff", 8)
    assert found.id == f"{2:032x}" and bits == 8
    assert registry.nearest_fingerprint("0000000000000fff", 8) is None  # 12 bits from the nearest
    registry.close()


# ---- through the pipeline ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A pipeline with its own registry."""
    home = tmp_path_factory.mktemp("registry-home")
    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=home))
    yield pipeline
    pipeline.close()


@pytest.mark.slow
def test_every_output_is_recorded_before_it_is_handed_out(recorded):
    [item] = recorded.text_to_image(GenerationRequest(prompt="a harbour", seed=1, width=64, height=64)).items
    kept = recorded.registry.get(item.id)
    assert kept is not None and kept.file_sha256 == hashlib.sha256(item.path.read_bytes()).hexdigest()
    assert kept.path == str(item.path) and kept.fingerprint == item.fingerprint
    result = recorded.verify(item.path)
    assert result.verdict == "trusted"
    assert kept.manifest_label == result.manifest["label"] == f"urn:c2pa:{uuid.UUID(item.id)}"  # known without reading back
    soft = result.manifest["assertions"]
    assert any(a["label"] == "c2pa.soft-binding" and a["data"]["alg"] == "org.aipic.phash64" for a in soft)


def test_a_registry_failure_removes_the_output_and_fails_the_request(tmp_path):
    from aipic.common.errors import StageFailed

    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path / "home"), output_dir=tmp_path / "out")
    try:
        with pipeline.registry.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE outputs")  # a real database error on commit
        with pytest.raises(StageFailed, match="could not be recorded in the provenance registry"):
            pipeline.text_to_image(GenerationRequest(prompt="a harbour", seed=1, width=64, height=64))
        assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # no unrecorded output is left
    finally:
        pipeline.close()


def _copies(path):
    image = Image.open(path).convert("RGB")

    def saved(fmt, **options):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    half = io.BytesIO()
    image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(half, "PNG")
    dx, dy = image.width // 20, image.height // 20
    cropped = io.BytesIO()
    image.crop((dx, dy, image.width - dx, image.height - dy)).save(cropped, "PNG")
    return {"jpeg q75": saved("JPEG", quality=75), "jpeg q50": saved("JPEG", quality=50), "png re-save": saved("PNG"), "webp": saved("WEBP", quality=80),
            "resize 50%": half.getvalue(), "crop 10%": cropped.getvalue()}


@pytest.mark.slow
def test_stripped_copies_are_recognised_and_unrelated_images_never_are(recorded, tmp_path):
    [item] = recorded.text_to_image(GenerationRequest(prompt="a lighthouse", seed=7, width=256, height=256)).items
    for attack, data in _copies(item.path).items():
        copy = tmp_path / f"copy-{attack.replace(' ', '-').replace('%', '')}"
        copy.write_bytes(data)
        result = recorded.verify(copy)
        assert result.verdict == "no_credentials", attack
        assert result.recovered is not None, attack
        assert result.recovered["output_id"] == item.id, attack
        assert result.recovered["original_manifest"] == "signature valid, trusted signer", attack
        how = result.recovered["matched_by"]
        if attack == "png re-save":  # lossless: the watermark is read back exactly
            assert how.startswith(f"watermark {item.watermark_id} (dwtDctSvd; CRC valid; fingerprint agrees"), how
        if attack in ("resize 50%", "crop 10%"):  # the watermark's grid is lost: the fingerprint recognises it
            assert how.startswith("fingerprint"), how
        assert "RECOGNISED: an aipic picture whose credentials were removed" in result.report() and "The original's credentials said: made with AI" in result.report()
    rng = np.random.default_rng(0)
    for n in range(20):
        unrelated = tmp_path / f"unrelated-{n}.png"
        if n % 2:
            Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(unrelated)
        else:
            make_image(128, 128, seed=100 + n).resize((8, 8)).resize((128, 128), Image.Resampling.BICUBIC).save(unrelated)
        assert recorded.verify(unrelated).recovered is None


@pytest.mark.slow
def test_the_cli_recovers_from_the_homes_registry(recorded, tmp_path, capsys):
    from aipic.cli import main

    [item] = recorded.text_to_image(GenerationRequest(prompt="a kite", seed=3, width=128, height=128)).items
    stripped = tmp_path / "stripped.jpg"
    Image.open(item.path).convert("RGB").save(stripped, "JPEG", quality=75)
    assert main(["verify", str(stripped), "--home", str(recorded.home), "--json"]) == 1
    import json

    report = json.loads(capsys.readouterr().out)[str(stripped)]
    assert report["verdict"] == "no_credentials" and report["recovered"]["manifest_label"].startswith("urn:c2pa:")


@pytest.mark.slow
def test_retention_deletes_old_files_but_keeps_their_manifests(recorded, tmp_path):
    [old, new] = [recorded.text_to_image(GenerationRequest(prompt=f"a boat {n}", seed=n, width=128, height=128)).items[0] for n in (1, 2)]
    with recorded.registry.engine.begin() as connection:  # the first output was made ten days ago
        connection.exec_driver_sql("UPDATE outputs SET created_at = ? WHERE id = ?", ((datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)).replace(tzinfo=None), old.id))
    copy = tmp_path / "copy.jpg"
    Image.open(old.path).convert("RGB").save(copy, "JPEG", quality=75)
    assert publish.apply_retention(recorded.registry, 7) == 1
    assert not old.path.exists() and new.path.exists()
    kept = recorded.registry.get(old.id)
    assert kept.file_deleted_at is not None and kept.manifest_store
    recovered = recorded.verify(copy).recovered
    assert recovered["output_id"] == old.id and recovered["original_file"] == "deleted (retention)"
    assert recovered["original_manifest"] == "signature valid, trusted signer"
    assert publish.apply_retention(recorded.registry, 0) == 0  # 0: keep everything


def test_an_output_is_neither_published_nor_served_before_its_record_commits(tmp_path):
    """While another connection holds the registry's write lock, the signed file exists only under its staging
    name (which the app never serves); once the row commits, it is renamed into its day folder."""
    import sqlite3

    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path / "home"))
    try:
        _ = pipeline.registry
        blocker = sqlite3.connect(tmp_path / "home" / "registry.sqlite3", timeout=30)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        outcome: list = []
        thread = threading.Thread(target=lambda: outcome.append(pipeline.text_to_image(GenerationRequest(prompt="a harbour", seed=1, width=64, height=64))))
        thread.start()
        outputs = tmp_path / "home" / "outputs"
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=120)
        while not list((outputs / ".staging").rglob("*.png")):
            assert datetime.datetime.now() < deadline, "nothing was staged"
            threading.Event().wait(0.05)
        published = [p for p in outputs.rglob("*.png") if ".staging" not in p.parts]
        assert published == []  # nothing under a served name while the record waits
        blocker.rollback()
        blocker.close()
        thread.join(timeout=120)
        [item] = outcome[0].items
        assert item.path.parent.parent == outputs.resolve() and item.path.is_file()
        assert pipeline.registry.get(item.id).path == str(item.path)
        assert not list((outputs / ".staging").rglob("*.png"))
    finally:
        pipeline.close()


def test_the_app_start_reconciles_the_output_folder_with_the_registry(tmp_path):
    """After a crash: a staged file whose row committed is published, one without a row is removed, and a file
    the registry does not know is moved to the quarantine (never served); recorded outputs stay."""
    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path / "home"))
    try:
        [kept, interrupted] = pipeline.text_to_image(GenerationRequest(prompt="a harbour", seed=1, width=64, height=64, batch=2)).items
        outputs = (tmp_path / "home" / "outputs").resolve()
        day = kept.path.parent.name
        staging = outputs / ".staging" / day
        staging.mkdir(parents=True, exist_ok=True)
        os.replace(interrupted.path, staging / interrupted.path.name)  # the crash came between its commit and its rename
        (staging / "aipic-never-recorded.png").write_bytes(b"signed but never recorded")
        (outputs / day / "aipic-half.png.part").write_bytes(b"half a file")
        stranger = outputs / day / "aipic-unrecorded.png"
        stranger.write_bytes(b"left by an older aipic")
        old = datetime.datetime.now().timestamp() - 3600
        for path in (*staging.iterdir(), outputs / day / "aipic-half.png.part"):
            os.utime(path, (old, old))
        done = pipeline.reconcile_outputs()
        assert (done.published, done.removed, done.quarantined) == (1, 2, 1)
        assert kept.path.is_file() and interrupted.path.is_file() and not list(staging.iterdir())
        assert not stranger.exists() and (tmp_path / "home" / "quarantine" / day / stranger.name).read_bytes() == b"left by an older aipic"
        assert pipeline.reconcile_outputs() == type(done)()  # a second start finds nothing to do
    finally:
        pipeline.close()


@pytest.mark.slow
def test_known_paths_are_looked_up_by_index(url):
    registry = Registry(url)
    try:
        registry.record(entry(7))
        assert registry.known_paths(["/x/7.png", "/x/8.png"]) == {"/x/7.png"} and registry.known_paths([]) == set()
        with registry.engine.connect() as connection:
            indexes = sa_inspect(connection).get_indexes("outputs")
        assert any(index["column_names"] == ["path"] for index in indexes)
    finally:
        registry.close()


# ---- the indexed fingerprint search (multi-index hashing) ----------------------------------------------------


def _flip(code: int, bits: int, rng) -> int:
    for position in rng.choice(64, size=bits, replace=False):
        code ^= 1 << int(position)
    return code


def _brute_force(codes: dict, query: int, max_bits: int):
    """The nearest (fewest bits, then smallest id) within max_bits by scanning everything."""
    best = min(((bin(code ^ query).count("1"), output_id) for output_id, code in codes.items()), default=None)
    return (best[1], best[0]) if best is not None and best[0] <= max_bits else None


def _fill(registry: Registry, codes: list[int]) -> dict:
    """Record these codes in bulk: the first half compacted into the postings, the rest left pending (a lookup
    reads both)."""
    from aipic.provenance.registry import fingerprint_rows, fingerprints, outputs, pending

    by_id = {}
    for first, half in ((True, codes[: len(codes) // 2]), (False, codes[len(codes) // 2 :])):
        rows, prints, waiting = [], [], []
        for code in half:
            values = dict(entry(len(by_id), f"{code:016x}").__dict__)
            rows.append(values)
            made, queued = fingerprint_rows(values["id"], {"full": f"{code:016x}"})
            prints += made
            waiting += queued
            by_id[values["id"]] = code
        with registry.engine.begin() as connection:
            connection.execute(outputs.insert(), rows)
            connection.execute(fingerprints.insert(), prints)
            connection.execute(pending.insert(), waiting)
        if first:
            assert registry.compact() == len(waiting)
    return by_id


@pytest.mark.parametrize("kind", ["random", "real pictures"])
def test_the_indexed_search_returns_exactly_what_a_full_scan_returns(url, kind):
    import numpy as np

    rng = np.random.default_rng(7)
    if kind == "random":
        base = [int(x) for x in rng.integers(0, 2**63, size=2000, dtype=np.int64)] + [int(x) | (1 << 63) for x in rng.integers(0, 2**63, size=2000, dtype=np.int64)]
    else:
        real = real_picture_codes()  # the bench's: the same pictures, crops, resizes and recompressions
        assert len(real) >= 30
        base = real + [_flip(code, int(rng.integers(1, 12)), rng) for code in real for _ in range(30)]  # a clustered registry
    registry = Registry(url)
    by_id = _fill(registry, base)
    queries = []
    for bits in range(0, 10):  # every distance 0–8 and just beyond
        for code in rng.choice(base, size=12, replace=False):
            queries.append(_flip(int(code), bits, rng))
    queries += [int(x) for x in rng.integers(0, 2**63, size=20, dtype=np.int64)]  # misses
    for query in queries:
        stats: dict = {}
        found = registry.nearest_fingerprint(f"{query:016x}", 8, stats)
        expected = _brute_force(by_id, query, 8)
        got = (found[0].id, found[1]) if found else None
        assert got == expected, (f"{query:016x}", got, expected)
        assert stats["candidates"] <= len(base)
    registry.close()


@pytest.mark.parametrize("revision", ["0003", "0004"])
def test_a_registry_made_by_an_earlier_schema_gets_its_index(tmp_path, revision):
    """A registry from before the index (0003) or with the substring columns (0004) is migrated: its fingerprints
    end up in the postings, compacted when the registry opens."""

    from aipic.provenance import fingerprint_index as index

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old = Registry(url, migrate=False)
    with old.engine.begin() as connection:
        _upgrade(connection, revision)
        for n, value in enumerate(["00000000000000ff", "ffffffffffffff00", "0f0f0f0f0f0f0f0f"]):
            values = dict(entry(n, value).__dict__)
            connection.exec_driver_sql(
                "INSERT INTO outputs (id, created_at, task, model, mime, file_sha256, manifest_label, manifest_store, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (values["id"], values["created_at"].isoformat(), "text-to-image", "m", "image/png", values["file_sha256"], f"urn:c2pa:{n}", b"s", value))
            if revision == "0003":
                connection.exec_driver_sql("INSERT INTO fingerprints (output_id, variant, value) VALUES (?, 'full', ?)", (values["id"], value))
            else:
                code = int(value, 16)
                connection.exec_driver_sql("INSERT INTO fingerprints (output_id, variant, value, code, chunk0, chunk1, chunk2) VALUES (?, 'full', ?, ?, ?, ?, ?)",
                                           (values["id"], value, index.as_signed(code), *index.chunks(code)))
    old.close()
    upgraded = Registry(url)  # migrates to head and compacts what the migration left pending
    with upgraded.engine.connect() as connection:
        indexes = {row[1] for row in connection.exec_driver_sql("PRAGMA index_list('fingerprints')")}
        columns = {row[1] for row in connection.exec_driver_sql("PRAGMA table_info('fingerprints')")}
        assert "ix_fingerprints_code" in indexes and not {"chunk0", "chunk1", "chunk2"} & columns
        assert connection.exec_driver_sql("SELECT count(*) FROM fingerprint_pending").scalar() == 0
        assert connection.exec_driver_sql("SELECT count(*) FROM fingerprint_postings").scalar() == 9  # three codes, three parts, no shared value
    found, bits = upgraded.nearest_fingerprint("ffffffffffffff01", 8)
    assert found.id == f"{1:032x}" and bits == 1
    upgraded.close()


def test_a_migration_that_fails_half_way_leaves_the_registry_as_it_was(tmp_path):
    """SQLite runs a whole upgrade in one transaction: a migration that fails in its data step (here a malformed
    fingerprint written at schema 0003; a process killed there is the same) leaves no new column or table behind,
    so the next start migrates again rather than failing on "duplicate column"."""

    from aipic.common.errors import ConfigError

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old = Registry(url, migrate=False)
    with old.engine.begin() as connection:
        _upgrade(connection, "0003")
        values = dict(entry(1).__dict__)
        connection.exec_driver_sql(
            "INSERT INTO outputs (id, created_at, task, model, mime, file_sha256, manifest_label, manifest_store, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (values["id"], values["created_at"].isoformat(), "text-to-image", "m", "image/png", values["file_sha256"], "urn:c2pa:1", b"s", "0123456789abcdef"))
        connection.exec_driver_sql("INSERT INTO fingerprints (output_id, variant, value) VALUES (?, 'full', 'not-hexadecimal!')", (values["id"],))
    old.close()
    with pytest.raises(ConfigError):
        Registry(url)
    with old.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"
        assert {row[1] for row in connection.exec_driver_sql("PRAGMA table_info('fingerprints')")} == {"output_id", "variant", "value"}
        assert not connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE name LIKE 'fingerprint_p%'").all()
        connection.exec_driver_sql("UPDATE fingerprints SET value = 'fedcba9876543210'")
        connection.commit()
    old.close()
    mended = Registry(url)
    assert mended.nearest_fingerprint("fedcba9876543210", 8)[1] == 0
    mended.close()


def test_malformed_fingerprints_are_refused_clearly(tmp_path):
    from aipic.common.errors import BadInput

    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    for bad in ("", "abc", "0x0123456789abcd", "0123456789abcdef01", "ghijklmnopqrstuv"):
        with pytest.raises(BadInput, match="16 hexadecimal digits"):
            registry.nearest_fingerprint(bad, 8)
    registry.close()


def test_one_picture_recorded_many_times_is_indexed_once_per_compaction(tmp_path):
    """The same code recorded again and again (the same picture, many outputs) does not grow what a lookup reads."""
    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    for n in range(150):
        registry.record(entry(n, "0123456789abcdef"), {"full": "0123456789abcdef", "crop90": "0123456789abcdef", "crop80": "0123456789abcdee"})
    registry.compact()
    stats: dict = {}
    found, bits = registry.nearest_fingerprint("0123456789abcdef", 8, stats)
    assert (found.id, bits) == (f"{0:032x}", 0) and stats["candidates"] <= 2 * 3
    registry.close()


def test_writers_a_reader_and_compactions_see_every_record_at_once(url, monkeypatch):
    """Two writers record (each compacting the index every third record) while a reader searches: every output is
    findable as soon as its record commits, and stays findable while its codes move into the postings."""
    import threading

    import aipic.provenance.registry as registry_module

    monkeypatch.setattr(registry_module, "COMPACT_EVERY", 3)
    registries = [Registry(url) for _ in range(3)]  # a registry each, as separate processes would have
    errors: list = []
    recorded: list[str] = []
    done = threading.Event()

    def value(n: int) -> str:
        return f"{(n * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}"

    def write(registry: Registry, start: int) -> None:
        try:
            for n in range(start, start + 40):
                registry.record(entry(n, value(n)))
                found = registry.nearest_fingerprint(value(n), 8)
                assert found is not None and found[1] == 0 and found[0].id == f"{n:032x}", value(n)
                recorded.append(value(n))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    def read(registry: Registry) -> None:
        try:
            while not done.is_set():
                for known in list(recorded):
                    found = registry.nearest_fingerprint(known, 8)
                    assert found is not None and found[1] == 0, known
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    writers = [threading.Thread(target=write, args=(registries[i], start)) for i, start in enumerate((1000, 2000))]
    reader = threading.Thread(target=read, args=(registries[2],))
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == [] and registries[0].count() == 80
    with registries[0].engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(registry_module.pending)).scalar() < 80  # compactions ran
    for registry in registries:
        registry.close()
