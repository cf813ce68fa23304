"""Finishing an image in worker processes, out of the GPU loop's way.

Finishing (watermark, fingerprints, encoding, signing) is mostly C code, but enough of it holds Python's GIL
that 16 threads doing it slow the GPU loop's own Python down: on an H200 the same compiled batch of 16 took
134 ms to generate while the pool's threads encoded JPEGs and 183 ms while they encoded PNGs and hashed
(bench/results). With worker processes the CPU pool's threads only hand an image over and wait.

``WorkerPool(0)`` runs everything in the calling thread (the CPU default, the tests' and ZeroGPU's). The
functions sent to a worker live in this module and import nothing from torch; their arguments and results
are plain data (numpy arrays, bytes, dicts, dataclasses of strings).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import multiprocessing
import os
import threading
import uuid
from concurrent.futures.process import BrokenProcessPool

from .errors import AipicError, StageFailed

log = logging.getLogger(__name__)


class WorkerFailed(Exception):
    """A worker's error that is not an AipicError, by type name only (library errors may not pickle)."""


class WorkerPool:
    """A lazily started pool of ``processes`` spawned worker processes (0: run in the calling thread)."""

    def __init__(self, processes: int = 0):
        self.processes = max(0, int(processes))
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._in_flight = 0  # calls being made now, here or in workers
        self._identity = None  # the signing identity each worker warms up with (set by start)
        self._trustmark = None  # the TrustMark model each worker loads at start, when that is the watermark

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn, not fork: the parent holds CUDA and many threads, which a forked child must not inherit
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_initialise, initargs=(self._identity, self._trustmark))
                log.info("started %d finishing worker processes", self.processes)
            return self._executor

    def call(self, function, *args):
        """``function(*args)`` in a worker process, or here when nothing else is being finished (then there is
        no GIL to share with other finishing work, and the hand-over would only add latency: measured on an
        H200, one request's encode + sign took 9.8 ms in a thread and 14.5 ms through a worker); its errors
        are raised here."""
        with self._lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            if not self.processes or alone:
                return _guarded(function, *args)
            return self._pool().submit(_guarded, function, *args).result()
        except BrokenProcessPool:
            with self._lock:  # a worker died (killed, out of memory): the next call starts a fresh pool
                broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            log.error("a finishing worker process died; starting new ones")
            raise StageFailed("Finishing this image failed (a worker process stopped). Nothing was published; please try again.") from None
        finally:
            with self._lock:
                self._in_flight -= 1

    def start(self, identity=None, trustmark=None) -> None:
        """Start every worker, each warmed up by finishing a small picture (imports, the PNG threads, the
        watermark's and fingerprint's first use, a c2pa signer for ``identity``), so no request pays for a cold
        worker: on an H200, 20 requests one after another through 14 cold workers took 274 ms each to encode
        and sign. Also warms this process, which finishes the requests that come alone. Part of warm-up."""
        self._identity, self._trustmark = identity, trustmark
        warm_up_finishing(identity, trustmark)
        if self.processes:
            pool = self._pool()
            for future in [pool.submit(os.getpid) for _ in range(self.processes)]:  # one per worker: each starts
                future.result()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def automatic_processes(cores: int | None = None) -> int:
    """Worker processes when none are configured on a GPU machine: all cores but two (the GPU loop and the
    app), at most 16; none on machines with fewer than 4 cores, where threads do as well."""
    cores = cores or os.cpu_count() or 1
    return min(16, cores - 2) if cores >= 4 else 0


def _initialise(identity, trustmark=None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if trustmark is not None:  # TrustMark runs torch on the CPU: one thread per worker, the workers share the cores
        import torch

        torch.set_num_threads(1)
    warm_up_finishing(identity, trustmark)


def warm_up_finishing(identity=None, trustmark=None) -> bool:
    """Finish a small random picture once (watermark, fingerprints, PNG and JPEG, and a signature when an
    identity is given) so that the first request in this process or thread pays for nothing; True if it did."""
    try:
        import numpy as np

        from . import provenance, watermark as marks

        picture = watermark(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8), marks.new_id(), trustmark)
        fields = dict(title="warm-up", task="text-to-image", description="warm-up", agent=provenance.software_agent({"name": "warm-up"}), human={}, models=[], outputs={}, audit={}, ingredients=[])
        for output_format in ("jpeg", "png"):
            if identity is not None:
                encode_and_sign(picture, output_format, fields, f"urn:c2pa:{uuid.uuid4()}", None, [], identity, None, None, False)
            else:
                from .fingerprint import fingerprints
                from .images import encode

                fingerprints(picture)
                encode(picture, output_format)
        return True
    except Exception as error:  # noqa: BLE001 - warming is an optimisation: the first request would pay instead
        log.warning("warming up the finishing work failed (%s)", type(error).__name__)
        return False


def _guarded(function, *args):
    try:
        return function(*args)
    except AipicError:
        raise
    except Exception as error:  # noqa: BLE001 - library errors may not pickle: send their type name
        raise WorkerFailed(type(error).__name__) from None


# ---- the work ----------------------------------------------------------------------------------------------

_signers: dict = {}  # one c2pa Signer per identity and TSA choice, per process (or per thread without workers)
_signers_lock = threading.Lock()


def _signer(identity, tsa_url):
    from . import provenance

    key = (threading.get_ident(), str(identity.key_path), identity.chain_pem, tsa_url)
    with _signers_lock:
        signer = _signers.get(key)
    if signer is None:
        signer = provenance.make_signer(identity, tsa_url)
        with _signers_lock:
            _signers[key] = signer
    return signer


def watermark(array, watermark_id: str, trustmark=None):
    """The picture carrying the id: dwtDctSvd by default, Adobe TrustMark with a TrustMarkSpec (its model
    loaded once per process)."""
    if trustmark is not None:
        from . import trustmark_marks

        return trustmark_marks.embed(trustmark, array, watermark_id)
    from . import watermark as marks

    return marks.embed(array, watermark_id)


def watermark_binding(watermark_id: str, trustmark=None) -> dict:
    """The c2pa.soft-binding assertion of a watermark id, for the method that embedded it."""
    if trustmark is not None:
        from . import trustmark_marks

        return trustmark_marks.soft_binding(trustmark, watermark_id)
    from . import watermark as marks

    return marks.soft_binding(watermark_id)


def encode_and_sign(array, output_format: str, fields: dict, label: str, watermark_binding: dict | None, ingredients: list, identity, author, tsa_url: str | None, thumbnail: bool) -> dict:
    """Fingerprint, encode and sign one picture: the signed file, its manifest store, fingerprints and hash.

    ``fields`` are ``provenance.build_manifest``'s arguments but the format and soft bindings, which are
    known only here. Signs with a timestamp when a TSA is given; if the TSA cannot be reached, signs without
    one (the output is still signed; only the independent signing time is missing) and says so in the log."""
    from . import provenance
    from .fingerprint import fingerprints, soft_binding
    from .images import encode, in_background

    pending = in_background(fingerprints, array)  # the fingerprints while this thread encodes
    data, mime = encode(array, output_format)
    prints = pending.result()
    manifest = provenance.build_manifest(
        **fields, format=mime, soft_bindings=[soft_binding(prints["full"])] + ([watermark_binding] if watermark_binding else []))
    manifest["label"] = label  # from the output's id, so the registry knows it without reading it back

    def sign(tsa):
        if author is not None:  # aipic's claim and the author's CAWG identity assertion
            return provenance.sign_as_author(data, mime, manifest, ingredients, identity, author, tsa, thumbnail)
        return provenance.sign_with_store(data, mime, manifest, ingredients, _signer(identity, tsa), thumbnail)

    timestamped = False
    if tsa_url:
        try:
            signed, store = sign(tsa_url)
            timestamped = True
        except AipicError:
            raise
        except Exception as error:  # noqa: BLE001 - c2pa raises its own errors for network failures
            log.warning("time-stamp authority unavailable (%s); signing without a timestamp", type(error).__name__)
    if not timestamped:
        signed, store = sign(None)
    return {"data": signed, "store": store, "mime": mime, "fingerprints": prints, "timestamped": timestamped, "sha256": hashlib.sha256(signed).hexdigest()}
