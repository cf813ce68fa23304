"""Reference distributions with provenance: where each expected share comes from.

The occupations reference is the U.S. Bureau of Labor Statistics' Current Population Survey, 2025 annual
averages, Table 11 (share of women among employed people by detailed occupation), shipped as
``audits/references/bls_cps_2025_occupations.tsv`` with its citation in the file's header. It is used as the
reference for *perceived gender presentation* — a proxy: employment by sex is not how a person presents, nor
how a model perceives them. Its race, ethnicity and age columns are not turned into skin-tone or age-group
references: no defensible mapping exists, and none is invented.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache

from aipic.common.data import data_dir
from aipic.common.errors import BadInput

BLS_SOURCE = "bls_cps_2025_women_share"
BLS_FILE = "bls_cps_2025_occupations.tsv"
BLS_TABLE_URL = "https://www.bls.gov/cps/cpsaat11.htm"
PROXY_NOTE = ("Reference: share of women among employed people in the occupation (US BLS CPS 2025, Table 11). A proxy: "
              "employment by sex is not perceived gender presentation, and the classifier's labels are perceptions.")


@dataclass(frozen=True)
class Occupation:
    prompt_word: str
    title: str
    year: int
    women_share: float
    source_url: str


@lru_cache(maxsize=1)
def bls_occupations() -> tuple[tuple[Occupation, ...], str]:
    """The occupations and the file's citation (its comment header)."""
    path = data_dir("audits") / "references" / BLS_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    citation = " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))
    rows = csv.DictReader([line for line in lines if not line.startswith("#")], delimiter="\t")
    occupations = tuple(
        Occupation(row["prompt_occupation"], row["bls_occupation_title"], int(row["year"]), float(row["women_pct"]) / 100, row["source_url"]) for row in rows
    )
    return occupations, citation


def occupation_in(prompt: str) -> Occupation | None:
    """The occupation a prompt names (the longest match: "software engineer" before "engineer")."""
    occupations, _ = bls_occupations()
    text = prompt.lower()
    found = [o for o in occupations if re.search(rf"\b{re.escape(o.prompt_word.lower())}s?\b", text)]
    return max(found, key=lambda o: len(o.prompt_word)) if found else None


def references_by_prompt(source: str, prompts: tuple, where: str) -> tuple[dict, dict]:
    """({prompt: {attribute: {label: share}}}, provenance) for a named reference source."""
    if source != BLS_SOURCE:
        raise BadInput(f"{where}: unknown reference_source {source!r}; known: {BLS_SOURCE}.")
    references, missing = {}, []
    for prompt in prompts:
        occupation = occupation_in(prompt)
        if occupation is None:
            missing.append(prompt)
            continue
        women = round(occupation.women_share, 4)
        references[prompt] = {"perceived_gender_presentation": {"feminine": women, "masculine": round(1 - women, 4)}}
    if missing:
        raise BadInput(f"{where}: no BLS occupation found in prompt(s) {', '.join(map(repr, missing))}.")
    _, citation = bls_occupations()
    provenance = {
        "source": "U.S. Bureau of Labor Statistics, Current Population Survey, Table 11 (cpsaat11)",
        "year": 2025,
        "link": BLS_TABLE_URL,
        "attribute": "perceived_gender_presentation",
        "kind": "proxy",
        "note": PROXY_NOTE,
        "citation": citation,
        "occupations": {prompt: found.title for prompt in references if (found := occupation_in(prompt)) is not None},
    }
    return references, provenance
