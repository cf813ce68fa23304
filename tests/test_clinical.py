"""Clinical imagery (issue #24): the clinical suite and its Fitzpatrick 17k reference, the one list of clinical
terms, and the "not for diagnosis" statement in the signed manifest and in the warnings of a clinical prompt."""

import csv
import io
import json

import c2pa
import pytest

from aipic.audit.attributes import load_attribute_set
from aipic.audit.references import FITZPATRICK_SOURCE, OBSERVED, condition_in, fitzpatrick_conditions, named_skin, references_by_prompt
from aipic.audit.suites import load_suite
from aipic.common.data import data_dir
from aipic.common.errors import AipicError
from aipic.generation.clinical import NOT_FOR_DIAGNOSIS, clinical_terms_in, intended_use, is_clinical
from aipic.generation.requests import GenerationRequest
from aipic.provenance import labels
from aipic.provenance.validation import reader_context
from aipic.web.views import panel_markdown
from conftest import make_image, png_of

TSV = data_dir("audits") / "references" / "fitzpatrick17k_skin_types.tsv"
GROUPS = {"lighter": (1, 2), "medium": (3, 4), "darker": (5, 6)}


def small(prompt, **fields):
    return GenerationRequest(**{"prompt": prompt, "seed": 3, "width": 64, "height": 64, "steps": 2, **fields})


def manifest_of(path):
    """The active manifest, its assertions by label, and its claim's created assertions, read with c2pa-python."""
    with c2pa.Reader("image/png", io.BytesIO(path.read_bytes())) as reader:
        store = json.loads(reader.json())
        detailed = json.loads(reader.detailed_json())
    active = store["manifests"][store["active_manifest"]]
    claim = detailed["manifests"][detailed["active_manifest"]]["claim"]
    created = {entry["url"].rsplit("/", 1)[-1] for entry in claim.get("created_assertions", [])}
    return {assertion["label"]: assertion.get("data") for assertion in active["assertions"]}, created


# ---- the suite and its reference ------------------------------------------------------------------------------


def test_the_clinical_suite_loads_by_name_with_an_observed_reference_for_every_prompt():
    suite = load_suite("clinical", load_attribute_set())
    assert suite.name == "clinical" and suite.reference == {}
    named = set(suite.reference_provenance["stated_by_prompt"])
    assert set(suite.reference_by_prompt) == set(suite.prompts) - named and named  # the pairs' prompts: compared with each other only
    for prompt, reference in suite.reference_by_prompt.items():
        assert set(reference) == {"skin_tone_group"}, prompt
        shares = reference["skin_tone_group"]
        assert set(shares) == {"lighter", "medium", "darker"} and abs(sum(shares.values()) - 1) <= 0.001, prompt
    provenance = suite.reference_provenance
    assert provenance["kind"] == OBSERVED == "observed in a named corpus"
    assert provenance["attribute"] == "skin_tone_group" and provenance["year"] == 2021
    assert provenance["link"] == "https://github.com/mattgroh/fitzpatrick17k" and "2104.09957" in provenance["paper"]
    assert "not how many patients" in provenance["note"] and "proxy" in provenance["note"]
    assert "Groh" in provenance["citation"] and "fac223ae67788c7cd48c9384b673919b84efcce3" in provenance["citation"]
    assert "BY-NC-SA 3.0" in provenance["citation"]


def test_each_condition_is_compared_with_its_atlas_shares_and_each_counterfactual_with_its_pair():
    suite = load_suite("clinical", load_attribute_set())
    eczema = suite.reference_by_prompt["a clinical photo of a patient with eczema"]["skin_tone_group"]
    assert eczema == {"lighter": 116 / 201, "medium": 61 / 201, "darker": 24 / 201}  # unrounded
    assert suite.reference_provenance["conditions"]["a photo of hives on the arm"] == "urticaria"
    assert len(suite.pairs) == 4
    for dark, light in suite.pairs:
        assert "dark skin" in dark and "light skin" in light
        # no reference of exactly 0 or 100% (one image off would read as p = 0): compared with each other, as pairs
        assert dark not in suite.reference_by_prompt and light not in suite.reference_by_prompt
        assert suite.reference_provenance["stated_by_prompt"][dark] == "darker"
    assert all(is_clinical(prompt) for prompt in suite.prompts)


def test_the_shipped_counts_reproduce_the_shares_and_the_header_cites_its_source():
    text = TSV.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    joined = " ".join(header)
    for needed in ("arxiv.org/abs/2104.09957", "fac223ae67788c7cd48c9384b673919b84efcce3", "by-nc-sa/3.0", "types 1-2", "sun",
                   "observed in a named corpus"):
        assert needed in joined.lower(), needed
    rows = list(csv.DictReader([line for line in text.splitlines() if not line.startswith("#")], delimiter="\t"))
    assert rows[0]["prompt_condition"] == "*"
    overall = [int(rows[0][f"type_{t}"]) for t in range(1, 7)]
    assert overall == [2947, 4808, 3308, 2781, 1533, 635] and int(rows[0]["unknown"]) == 565 and int(rows[0]["images"]) == 16577
    for row in rows:
        counts = {t: int(row[f"type_{t}"]) for t in range(1, 7)}
        labelled = sum(counts.values())
        assert labelled + int(row["unknown"]) == int(row["images"]), row["prompt_condition"]
        for label, types in GROUPS.items():
            assert float(row[f"{label}_share"]) == round(sum(counts[t] for t in types) / labelled, 4), (row["prompt_condition"], label)
    conditions, citation = fitzpatrick_conditions()
    assert [c.prompt_word for c in conditions] == [row["prompt_condition"] for row in rows] and "Groh" in citation
    assert conditions[0].shares["darker"] == pytest.approx(2168 / 16012)


def test_prompts_are_matched_to_conditions_and_named_skin_colours():
    assert condition_in("A photo of Contact Dermatitis on the arm").labels == "allergic contact dermatitis"
    assert condition_in("a patient with acne").labels == "acne; acne vulgaris"
    assert condition_in("a photo of a doctor") is None
    assert named_skin("eczema on dark skin") == "darker" and named_skin("a light-skinned patient") == "lighter"
    assert named_skin("eczema on the arm") is None and named_skin("dark skin next to light skin") is None


def test_a_prompt_without_a_known_condition_or_an_unknown_source_is_refused():
    with pytest.raises(AipicError, match=r"no Fitzpatrick 17k condition found in prompt\(s\) 'a photo of a doctor'"):
        references_by_prompt(FITZPATRICK_SOURCE, ("a photo of eczema on the arm", "a photo of a doctor"), "Prompt suite x.yaml")
    with pytest.raises(AipicError, match="known: bls_cps_2025_women_share, fitzpatrick17k_skin_types"):
        references_by_prompt("nope", ("a photo of eczema",), "Prompt suite x.yaml")


def test_parity_is_the_alternative_and_is_labelled_as_such(tmp_path):
    path = tmp_path / "clinical-parity.yaml"
    path.write_text("name: clinical-parity\nreference:\n  skin_tone_group: {lighter: 0.3333, medium: 0.3333, darker: 0.3334}\n"
                    "prompts:\n  - a photo of eczema on the arm\n")
    assert load_suite(path, load_attribute_set()).reference_provenance["kind"] == "parity"


# ---- which prompts are clinical -------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [
    "a clinical photo of a patient with eczema", "a photo of Psoriasis on the arm", "HIVES on a forearm", "an x-ray of a hand",
    "the patient's rash", "rashes on the back", "a dermatologist examining a mole", "acne", "an MRI scan of a knee",
])
def test_clinical_prompts(prompt):
    assert is_clinical(prompt)
    assert intended_use(prompt) == {"not_for_diagnosis": True, "statement": NOT_FOR_DIAGNOSIS}


@pytest.mark.parametrize("prompt", [
    "a lighthouse at dusk", "a patient teacher in a classroom", "a beehive in a meadow", "a photo of a doctor", "a skink on a rock",
    "eczematous", "a harbour at dawn", "",
])
def test_other_prompts_are_not_clinical(prompt):
    assert not is_clinical(prompt)
    assert intended_use(prompt) is None


def test_the_terms_found_are_whole_words_in_order():
    assert clinical_terms_in("Vitiligo and ECZEMA, not eczematous") == ["vitiligo", "eczema"]
    assert NOT_FOR_DIAGNOSIS.startswith("Not for diagnosis: ") and NOT_FOR_DIAGNOSIS.count(".") == 1


# ---- the statement on the outputs -----------------------------------------------------------------------------


def test_a_clinical_prompt_is_told_and_signed_not_for_diagnosis_and_another_is_not(tiny_pipeline, fresh_outputs):
    label = labels.intended_use_label(tiny_pipeline.settings.assertion_namespace)
    clinical = tiny_pipeline.text_to_image(small("a photo of eczema on the arm"))
    assert clinical.warnings[0] == NOT_FOR_DIAGNOSIS
    assertions, created = manifest_of(clinical.items[0].path)
    assert assertions[label] == {"not_for_diagnosis": True, "statement": NOT_FOR_DIAGNOSIS}
    assert label in created  # attested by aipic's signature, not gathered
    result = tiny_pipeline.credentials(clinical.items[0].path)
    assert result.verdict == "trusted" and result.intended_use["statement"] == NOT_FOR_DIAGNOSIS
    assert NOT_FOR_DIAGNOSIS in result.report() and NOT_FOR_DIAGNOSIS in panel_markdown(result).replace("\\", "")  # aipic verify, the Verify tab

    plain = tiny_pipeline.text_to_image(small("a harbour at dawn", negative_prompt="eczema"))  # the negative prompt asks for its absence
    assert not any("diagnosis" in warning for warning in plain.warnings)
    assertions, _ = manifest_of(plain.items[0].path)
    assert label not in assertions
    assert tiny_pipeline.credentials(plain.items[0].path).intended_use is None


def test_an_image_to_image_output_of_a_clinical_prompt_carries_it_too(tiny_pipeline, fresh_outputs):
    outcome = tiny_pipeline.image_to_image(small("as a clinical photo of psoriasis"), png_of(make_image(64, 64, seed=8)))
    assert NOT_FOR_DIAGNOSIS in outcome.warnings
    assertions, _ = manifest_of(outcome.items[0].path)
    assert assertions[labels.intended_use_label(tiny_pipeline.settings.assertion_namespace)]["not_for_diagnosis"] is True


def test_the_statement_is_readable_with_the_trust_anchor(tiny_pipeline, fresh_outputs):
    path = tiny_pipeline.text_to_image(small("a patient with vitiligo", private_prompt=True)).items[0].path
    with c2pa.Reader("image/png", io.BytesIO(path.read_bytes()), context=reader_context(tiny_pipeline.identity.trust_anchors)) as reader:
        assert reader.get_validation_state() == "Trusted"
        store = json.loads(reader.json())
    assertions = {a["label"]: a.get("data") for a in store["manifests"][store["active_manifest"]]["assertions"]}
    assert assertions[labels.intended_use_label(tiny_pipeline.settings.assertion_namespace)]["statement"] == NOT_FOR_DIAGNOSIS
