import pytest
import torch

from aipic.models.catalog import Limits
from aipic.common.errors import AipicError
from aipic.generation.requests import StyleRequest
from aipic.generation.style import gram_matrix, style_transfer
from aipic.pipeline.resolve import resolve_style
from conftest import make_image


def test_gram_matrix_is_normalised_channel_correlation():
    features = torch.ones(1, 2, 3, 3)
    features[0, 1] = 2
    gram = gram_matrix(features)
    assert torch.allclose(gram, torch.tensor([[[1.0, 2.0], [2.0, 4.0]]]) / 2)


def test_style_transfer_moves_towards_the_style(tiny_pipeline):
    model = tiny_pipeline.models.get("style")
    request = StyleRequest(content_image=make_image(96, 64, seed=1), style_image=make_image(64, 64, seed=2), steps=30, size=96)
    image, losses = style_transfer(model.obj, model.extra["layers"], request)
    assert image.size == (96, 64)
    assert losses["style"] < losses["initial_style"]
    again, _ = style_transfer(model.obj, model.extra["layers"], request)
    assert image.tobytes() == again.tobytes()  # seeded


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"steps": 0}, "Steps must be between 1 and 500"),
        ({"size": 10}, "Size must be between 64 and 1024"),
        ({"style_weight": 0, "content_weight": 0}, "cannot both be 0"),
        ({"style_weight": "lots"}, "must be a number"),
    ],
)
def test_bad_style_requests_get_clear_errors(fields, message):
    request = StyleRequest(content_image=make_image(), style_image=make_image(), **fields)
    with pytest.raises(AipicError, match=message):
        resolve_style(request, Limits())
