"""Flip rates for edits: arithmetic by hand, and a run through the real engine."""

import json

import pytest

from aipic.audit.attributes import load_attribute_set
from aipic.audit.attributes import AttributeResult
from aipic.audit.auditor import AuditResult
from aipic.cli import main
from aipic.audit.flips import flip_stats
from conftest import image_file

GENDER = "perceived_gender_presentation"


def audit(label=None, person=True):
    attributes = {GENDER: AttributeResult(GENDER, "g", label, 0.9, {})} if label else {}
    return AuditResult(person_present=person, person_probability=0.9, attributes=attributes)


def test_flip_rates_count_only_pairs_read_on_both_sides():
    pairs = [(audit("feminine"), audit("feminine")), (audit("feminine"), audit("masculine")), (audit("masculine"), audit("feminine")),
             (audit("feminine"), audit("abstain")), (audit("masculine"), audit(person=False))]
    entry = flip_stats(pairs, load_attribute_set())[GENDER]
    assert (entry["compared"], entry["flips"], entry["not_compared"]) == (3, 2, 2)
    assert entry["flip_rate"] == pytest.approx(2 / 3)
    assert entry["transitions"] == {"feminine → masculine": 1, "masculine → feminine": 1}


@pytest.mark.slow
def test_aipic_audit_flips_runs_edits_through_the_engine(tmp_path, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for n in range(3):
        image_file(folder / f"{n}.png", 96, 64, seed=n)
    assert main(["audit", "flips", "--images", str(folder), "--prompt", "as a watercolour", "--models", "tiny", "--home", str(tmp_path), "--out", str(tmp_path / "f")]) == 0
    result = json.loads((tmp_path / "f" / "flips.json").read_text())
    assert result["inputs"] == 3 and not result["failed"]
    for entry in result["attributes"].values():
        assert entry["compared"] + entry["not_compared"] == 3
    assert len(list((tmp_path / "f" / "images").rglob("*.png"))) == 3  # every edit was signed and stored
    assert main(["audit", "flips", "--images", str(folder), "--models", "tiny", "--home", str(tmp_path)]) == 2
    assert "need --prompt" in capsys.readouterr().err
