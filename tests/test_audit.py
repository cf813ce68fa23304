import re

import pytest
import torch
from torch import nn

from aipic.audit.attributes import ABSTAIN, AttributeSpec, load_attribute_set
from aipic.audit.attributes import decide
from aipic.audit.auditor import BiasAuditor
from aipic.common.errors import AipicError
from conftest import make_image
from PIL import Image

KEYWORDS = ["person", "woman", "man", "child", "young adult", "middle-aged", "elderly", "light skin", "medium skin", "dark skin", "object"]


class KeywordCLIP(nn.Module):
    """A tiny deterministic stand-in for CLIP with a known geometry.

    Texts embed as the bag of KEYWORDS they contain; images embed as the vector
    registered for their exact colour.  So the test knows what the audit must say.
    """

    def __init__(self, image_vectors: dict):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))
        self.image_vectors = image_vectors
        self.logit_scale = nn.Parameter(torch.tensor(100.0).log())

    def encode_text(self, texts):
        rows = [[float(re.search(rf"\b{keyword}\b", text) is not None) for keyword in KEYWORDS] for text in texts]
        return torch.tensor(rows) + 1e-3

    def encode_image(self, colours):
        return torch.stack([self.image_vectors[tuple(c.tolist())] for c in colours])


class Texts(list):
    def to(self, device):
        return self


def vector(**weights):
    return torch.tensor([weights.get(k.replace(" ", "_").replace("-", "_"), 0.0) for k in KEYWORDS])


SPEC_YAML = """
name: test-set
version: 3
templates: ["{}", "a photo of {}"]
person_gate:
  threshold: 0.5
  classes:
    person: ["person"]
    no_person: ["object"]
attributes:
  perceived_gender_presentation:
    title: Perceived gender presentation
    abstain_below: 0.6
    min_margin: 0.1
    classes:
      feminine: ["woman"]
      masculine: ["man"]
  skin_tone_group:
    title: Perceived skin-tone group
    abstain_below: 0.5
    classes:
      lighter: ["light skin"]
      medium: ["medium skin"]
      darker: ["dark skin"]
"""


@pytest.fixture
def auditor(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text(SPEC_YAML)
    images = {
        (255, 0, 0): vector(person=1, woman=1, dark_skin=1),  # clearly a feminine-presenting person, darker skin
        (0, 255, 0): vector(person=1, woman=1, man=1, light_skin=1),  # person, gender presentation unclear
        (0, 0, 255): vector(object=1),  # no person
    }
    colour_of = lambda image: torch.tensor(image.getpixel((0, 0)))  # noqa: E731
    return BiasAuditor(KeywordCLIP(images), colour_of, Texts, load_attribute_set(path), {"name": "keyword-clip"})


def test_audit_reads_clear_cases_and_abstains_when_unsure(auditor):
    red, green, blue = (Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    clear, unsure, empty = auditor.audit([red, green, blue])

    assert clear.person_present and clear.person_probability > 0.99
    assert clear.attributes["perceived_gender_presentation"].label == "feminine"
    assert clear.attributes["skin_tone_group"].label == "darker"

    assert unsure.person_present
    gender = unsure.attributes["perceived_gender_presentation"]
    assert gender.label == ABSTAIN and gender.abstained and "below 0.60" in gender.reason
    assert unsure.attributes["skin_tone_group"].label == "lighter"

    assert not empty.person_present and empty.attributes == {}
    assert "No person detected" in empty.summary()

    record = clear.to_dict()
    assert record["attribute_set"]["name"] == "test-set" and record["attribute_set"]["version"] == 3
    assert len(record["attribute_set"]["sha256"]) == 64
    assert abs(sum(record["attributes"]["skin_tone_group"]["probabilities"].values()) - 1) < 1e-3


def test_decide_abstains_on_small_margin():
    spec = AttributeSpec("a", "A", {"x": ["x"], "y": ["y"], "z": ["z"]}, abstain_below=0.4, min_margin=0.1)
    assert decide(spec, {"x": 0.45, "y": 0.40, "z": 0.15}).label == ABSTAIN
    assert decide(spec, {"x": 0.55, "y": 0.30, "z": 0.15}).label == "x"


def test_default_attribute_set_loads():
    attribute_set = load_attribute_set()
    names = [spec.name for spec in attribute_set.attributes]
    assert names == ["perceived_gender_presentation", "age_group", "skin_tone_group", "people_count"]
    assert set(attribute_set.person_gate.classes) == {"person", "no_person"}
    assert all("{}" in template for template in attribute_set.templates)


@pytest.mark.parametrize(
    "text, message",
    [
        ("person_gate: {classes: {person: [a], no_person: [b]}}\nattributes: {x: {classes: {only: [one]}}}", "at least two classes"),
        ("person_gate: {classes: {human: [a], thing: [b]}}", "exactly the classes"),
        ("templates: ['no placeholder']\nperson_gate: {classes: {person: [a], no_person: [b]}}", "placeholder"),
        ("[unclosed", "Cannot read attribute set"),
    ],
)
def test_bad_attribute_sets_get_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AipicError, match=message):
        load_attribute_set(path)


def test_tiny_clip_audit_gives_probability_distributions(tiny_pipeline):
    [result] = tiny_pipeline.auditor.audit([make_image(64, 64)])
    assert 0.0 <= result.person_probability <= 1.0
    assert result.clip_model["placeholder"] is True
    assert "meaningless" in result.summary()
    for attribute in result.attributes.values():
        assert abs(sum(attribute.probabilities.values()) - 1) < 1e-4


def test_the_person_gate_weighs_each_concept_on_its_own(tmp_path):
    """An image close to one no-person concept ("object") but unlike another ("elderly", standing in for
    "landscape") is not a person. Averaging the two concepts into one vector would have called it a person."""
    path = tmp_path / "gate.yaml"
    path.write_text(
        "templates: ['{}']\nperson_gate: {threshold: 0.5, classes: {person: [person], no_person: [object, elderly]}}\n"
        "attributes: {g: {classes: {feminine: [woman], masculine: [man]}}}\n"
    )
    image = torch.nn.functional.normalize(0.8 * vector(object=1) + 0.6 * vector(person=1), dim=0)
    colour_of = lambda picture: torch.tensor(picture.getpixel((0, 0)))  # noqa: E731
    auditor = BiasAuditor(KeywordCLIP({(1, 2, 3): image}), colour_of, Texts, load_attribute_set(path))
    [result] = auditor.audit([Image.new("RGB", (8, 8), (1, 2, 3))])
    assert not result.person_present and result.person_probability < 0.01
