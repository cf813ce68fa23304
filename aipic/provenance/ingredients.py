"""A person's upload as an ingredient of an output: its own bytes (so its own Content Credentials stay in the
chain) after those credentials were checked in the bounded verifier, or its pixels when C2PA cannot parse it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from aipic.common.images import png_bytes
from aipic.provenance.manifest import Ingredient
from aipic.provenance.validation import SUPPORTED_INGREDIENT_FORMATS, sniff_format
from aipic.provenance.verify import verify_bytes, verify_file


def make_ingredient(source, image, title: str, relationship: str, role: str, trust_anchors: Sequence[str] = ()) -> Ingredient:
    """An ingredient from an upload: its original bytes when it is an image file C2PA reads, else a PNG of it.

    The upload's own credentials are checked first (in the bounded verifier). Failed ones stay in the chain with
    their status recorded; damaged ones (C2PA cannot even parse them) are dropped, because no manifest can
    reference them, and the upload is recorded as such.
    """
    data = None
    if isinstance(source, (str, Path)) and Path(source).is_file():
        data = Path(source).read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    mime = sniff_format(data) if data else None
    if data is None or mime not in SUPPORTED_INGREDIENT_FORMATS:
        return Ingredient(title=title, relationship=relationship, data=png_bytes(image), format="image/png", role=role)
    if isinstance(source, (str, Path)):
        check = verify_file(source, list(trust_anchors))
    else:
        check = verify_bytes(data, list(trust_anchors))
    upload_sha256 = hashlib.sha256(data).hexdigest()
    if check.verdict in ("unreadable_manifest", "unreadable", "too_large"):
        # C2PA cannot parse the file (damaged credentials, or a damaged file that an image decoder still reads):
        # no manifest can reference it, so its pixels go in as a PNG and the upload is recorded as such.
        data, mime = png_bytes(image), "image/png"
    verdict = check.verdict if check.verdict not in ("unreadable", "too_large") else "unchecked"
    return Ingredient(title=title, relationship=relationship, data=data, format=mime, role=role, credentials=verdict, codes=list(check.codes), upload_sha256=upload_sha256, terms=check.terms, rights=check.rights)
