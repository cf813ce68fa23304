"""Reference distributions with provenance: where each expected share comes from.

The occupations reference is the U.S. Bureau of Labor Statistics' Current Population Survey, 2025 annual
averages, Table 11 (share of women among employed people by detailed occupation), shipped as
``audits/references/bls_cps_2025_occupations.tsv`` with its citation in the file's header. It is used as the
reference for *perceived gender presentation* — a proxy: employment by sex is not how a person presents, nor
how a model perceives them. Its race, ethnicity and age columns are not turned into skin-tone or age-group
references: no defensible mapping exists, and none is invented.

The clinical reference is the Fitzpatrick 17k dataset (Groh et al. 2021): the Fitzpatrick skin types of 16,577
clinical images from two dermatology atlases, counted by aipic per condition and shipped as
``audits/references/fitzpatrick17k_skin_types.tsv`` with its citation, commit and licence in the file's header.
It is the reference for *perceived skin-tone group* (types 1-2 lighter, 3-4 medium, 5-6 darker, as Groh et al.
group them): what dermatology atlases show, observed in a named corpus, not a share of patients or of people. A
prompt that names a skin colour ("… on dark skin", a counterfactual pair) is compared with the group it names.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from functools import lru_cache

from aipic.common.data import data_dir
from aipic.common.errors import BadInput

log = logging.getLogger(__name__)

BLS_SOURCE = "bls_cps_2025_women_share"
BLS_FILE = "bls_cps_2025_occupations.tsv"
BLS_TABLE_URL = "https://www.bls.gov/cps/cpsaat11.htm"
PROXY_NOTE = ("Reference: share of women among employed people in the occupation (US BLS CPS 2025, Table 11). A proxy: "
              "employment by sex is not perceived gender presentation, and the classifier's labels are perceptions.")

FITZPATRICK_SOURCE = "fitzpatrick17k_skin_types"
FITZPATRICK_FILE = "fitzpatrick17k_skin_types.tsv"
FITZPATRICK_URL = "https://github.com/mattgroh/fitzpatrick17k"
FITZPATRICK_PAPER = "https://arxiv.org/abs/2104.09957"
OBSERVED = "observed in a named corpus"
SKIN_TONE = "skin_tone_group"
# Fitzpatrick skin types onto aipic's skin_tone_group labels, as Groh et al. group them (1-2, 3-4, 5-6).
TYPE_GROUPS = {"lighter": (1, 2), "medium": (3, 4), "darker": (5, 6)}
# A prompt that names a skin colour asks for that group: it is compared with what it asks for, not the atlases.
NAMED_SKIN = {"dark": "darker", "light": "lighter"}
ATLAS_NOTE = ("Reference: the share of each Fitzpatrick skin-type group among the images of the condition in two dermatology atlases "
              "(Fitzpatrick 17k, Groh et al. 2021; types 1-2 lighter, 3-4 medium, 5-6 darker; images without a type left out). "
              "What dermatology atlases show, not how many patients or people have each skin type; Fitzpatrick type is a "
              "sun-reactivity scale used as a proxy for skin tone, and the classifier's labels are perceptions. Prompts that name "
              "a skin colour (the counterfactual pairs) are compared with each other, not with a reference.")
SOURCES = (BLS_SOURCE, FITZPATRICK_SOURCE)


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
    if source == FITZPATRICK_SOURCE:
        return _fitzpatrick_references(prompts, where)
    if source != BLS_SOURCE:
        raise BadInput(f"{where}: unknown reference_source {source!r}; known: {', '.join(SOURCES)}.")
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


# ---- Fitzpatrick 17k: skin types in dermatology atlases -------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    prompt_word: str  # "*" for every image of the dataset
    labels: str  # the dataset's condition label(s)
    type_counts: tuple  # images of Fitzpatrick types 1..6
    unknown: int  # images without a type (-1), left out of the shares

    @property
    def labelled(self) -> int:
        return sum(self.type_counts)

    @property
    def shares(self) -> dict:
        """{skin_tone_group label: share} among the labelled images, from the counts."""
        return {label: sum(self.type_counts[t - 1] for t in types) / self.labelled for label, types in TYPE_GROUPS.items()}


@lru_cache(maxsize=1)
def fitzpatrick_conditions() -> tuple[tuple[Condition, ...], str]:
    """The conditions (the all-images row first) and the file's citation (its comment header)."""
    path = data_dir("audits") / "references" / FITZPATRICK_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    citation = " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))
    rows = csv.DictReader([line for line in lines if not line.startswith("#")], delimiter="\t")
    conditions = tuple(
        Condition(row["prompt_condition"], row["fitzpatrick17k_labels"], tuple(int(row[f"type_{t}"]) for t in range(1, 7)), int(row["unknown"])) for row in rows
    )
    return conditions, citation


def condition_in(prompt: str) -> Condition | None:
    """The skin condition a prompt names (the longest, should two match)."""
    conditions, _ = fitzpatrick_conditions()
    text = prompt.lower()
    found = [c for c in conditions if c.prompt_word != "*" and re.search(rf"\b{re.escape(c.prompt_word.lower())}s?\b", text)]
    return max(found, key=lambda c: len(c.prompt_word)) if found else None


def named_skin(prompt: str) -> str | None:
    """The skin_tone_group a prompt asks for by naming a skin colour ("on dark skin", "light-skinned"), if any."""
    found = {NAMED_SKIN[word] for word in re.findall(r"\b(dark|light)[- ]skin(?:ned)?\b", prompt.lower())}
    return found.pop() if len(found) == 1 else None


def _fitzpatrick_references(prompts: tuple, where: str) -> tuple[dict, dict]:
    references, missing, conditions, stated = {}, [], {}, {}
    for prompt in prompts:
        condition = condition_in(prompt)
        if condition is None:
            missing.append(prompt)
            continue
        conditions[prompt] = condition.labels
        group = named_skin(prompt)
        if group is not None:  # it asks for a skin: compared with its pair, not with the atlas or an exact 0 or 100%
            stated[prompt] = group
        else:
            references[prompt] = {SKIN_TONE: dict(condition.shares)}  # unrounded: the counts give them exactly
    if missing:
        known = ", ".join(c.prompt_word for c in fitzpatrick_conditions()[0] if c.prompt_word != "*")
        raise BadInput(f"{where}: no Fitzpatrick 17k condition found in prompt(s) {', '.join(map(repr, missing))} (known: {known}).")
    log.debug("Fitzpatrick 17k references for %d prompt(s), %d naming a skin colour", len(references), len(stated))
    _, citation = fitzpatrick_conditions()
    provenance = {
        "source": "Fitzpatrick 17k dataset (Groh et al. 2021): Fitzpatrick skin types of clinical images in two dermatology atlases",
        "year": 2021,
        "link": FITZPATRICK_URL,
        "paper": FITZPATRICK_PAPER,
        "attribute": SKIN_TONE,
        "kind": OBSERVED,
        "note": ATLAS_NOTE,
        "citation": citation,
        "conditions": conditions,
        "stated_by_prompt": stated,
    }
    return references, provenance
