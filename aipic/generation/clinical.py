"""Clinical prompts: aipic makes no diagnostic imagery, and says so on every output of a prompt that asks for a
clinical picture (a skin condition, "a patient", a medical scan). One list of terms decides; a prompt is clinical
when it names any of them as a whole word or phrase, in any case (a plural "s" or "es" included). The person is
told in the job's warnings, and the signed manifest carries the statement (the pipeline hands ``intended_use``
to aipic.provenance.manifest). The negative prompt is not read: naming a condition there asks for its absence.

Why: generators learn from pictures in which dark skin is under-represented in dermatology (README, Clinical
imagery); a made-up picture of a condition is not evidence of how it looks on anyone.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

log = logging.getLogger(__name__)

NOT_FOR_DIAGNOSIS = ("Not for diagnosis: this picture was made up by an AI model and is not a photo of a real patient, "
                     "so do not use it to diagnose anyone or to learn what a condition looks like.")

# Whole words or phrases, lower case. Bare "patient" is left out ("a patient teacher"), as are words with common
# everyday senses ("mole", "shingles", "scar", "burn").
CLINICAL_TERMS = (
    # a clinical picture or setting
    "clinical photo", "clinical photograph", "clinical image", "clinical picture", "medical photo", "medical photograph", "medical image",
    "patient with", "patient's", "patients", "of a patient", "on a patient", "diagnosis", "diagnose", "diagnostic", "symptom",
    "dermatology", "dermatologist", "dermatological", "dermoscopy", "dermoscopic", "skin condition", "skin disease", "skin disorder",
    "skin lesion", "lesion", "rash", "biopsy", "histology", "wound", "ulcer", "pressure sore", "blister", "sunburn",
    # skin conditions (the clinical suite's among them)
    "eczema", "dermatitis", "psoriasis", "acne", "vitiligo", "rosacea", "hives", "urticaria", "keloid", "melasma", "hyperpigmentation",
    "lichen planus", "seborrheic", "impetigo", "cellulitis", "ringworm", "tinea", "scabies", "wart", "herpes", "cold sore", "chickenpox",
    "measles", "mpox", "monkeypox", "lupus", "alopecia", "melanoma", "carcinoma", "skin cancer", "cancer", "tumor", "tumour",
    # medical imaging
    "x-ray", "xray", "radiograph", "mri", "ct scan", "ultrasound", "mammogram", "endoscopy",
)


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern:
    terms = sorted(CLINICAL_TERMS, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(term) for term in terms) + r")(?:s|es)?\b", re.IGNORECASE)


def clinical_terms_in(prompt: str) -> list[str]:
    """The clinical terms a prompt names, lower case, in order of appearance."""
    return [match.group(0).lower() for match in _pattern().finditer(prompt or "")]


def is_clinical(prompt: str) -> bool:
    """Whether a prompt asks for a clinical picture (names any clinical term as a whole word or phrase)."""
    return _pattern().search(prompt or "") is not None


def intended_use(prompt: str) -> dict | None:
    """What the manifest of an output of this prompt says it must not be used for: None when it is not clinical."""
    if not is_clinical(prompt):
        return None
    log.debug("clinical prompt: its outputs carry the not-for-diagnosis statement")
    return {"not_for_diagnosis": True, "statement": NOT_FOR_DIAGNOSIS}
