"""Neural style transfer (Gatys et al. 2016) on VGG features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from aipic.generation.requests import StyleRequest

STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
CONTENT_LAYER = "conv4_2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_to_tensor(image: Image.Image, width: int, height: int, device) -> torch.Tensor:
    resized = image.resize((width, height), Image.Resampling.LANCZOS)
    data = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).reshape(height, width, 3)
    return data.permute(2, 0, 1).unsqueeze(0).float().div(255).to(device)


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    data = tensor.detach().clamp(0, 1).mul(255).round().byte().squeeze(0).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(data, "RGB")


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


class VGGFeatures(torch.nn.Module):
    """Runs a VGG feature stack and returns the activations of the named layers."""

    def __init__(self, features: torch.nn.Sequential, layers: dict):
        super().__init__()
        self.features = features
        self.index_to_name = {index: name for name, index in layers.items() if name in STYLE_LAYERS + (CONTENT_LAYER,)}
        self.last = max(self.index_to_name)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> dict:
        x = (image - self.mean.to(image.device)) / self.std.to(image.device)
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x) if not isinstance(layer, torch.nn.ReLU) else F.relu(x)
            if index in self.index_to_name:
                out[self.index_to_name[index]] = x
            if index >= self.last:
                break
        return out


def style_transfer(features: torch.nn.Sequential, layers: dict, request: StyleRequest, progress=None) -> tuple[Image.Image, dict]:
    """Optimise an image (initialised from the content) to match the content's features and the style's Gram matrices.

    Returns the image and the final losses.  `progress(step, total)` is called after each step if given.
    """
    pixels, losses = style_transfer_pixels(features, layers, request, progress)
    return tensor_to_image(pixels.unsqueeze(0)), losses


def style_transfer_pixels(features: torch.nn.Sequential, layers: dict, request: StyleRequest, progress=None) -> tuple[torch.Tensor, dict]:
    """As style_transfer, but returns the result as a CHW float tensor in [0, 1] on the model's device."""
    device = next(features.parameters()).device
    network = VGGFeatures(features, layers).to(device)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    width, height = request.output_size
    content = image_to_tensor(request.content_image, width, height, device)
    style = image_to_tensor(request.style_image, width, height, device)
    with torch.no_grad():
        content_target = network(content)[CONTENT_LAYER]
        style_targets = {name: gram_matrix(value) for name, value in network(style).items() if name in STYLE_LAYERS}

    generator = torch.Generator(device="cpu").manual_seed(request.seed)
    noise = torch.randn(content.shape, generator=generator).to(device) * 0.02
    result = (content + noise).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([result], lr=0.02)
    losses: dict[str, float | None] = {}
    initial_style = None
    for step in range(request.steps):
        optimizer.zero_grad()
        activations = network(result)
        content_loss = F.mse_loss(activations[CONTENT_LAYER], content_target)
        style_loss = torch.stack([F.mse_loss(gram_matrix(activations[name]), target) for name, target in style_targets.items()]).sum()
        loss = request.content_weight * content_loss + request.style_weight * style_loss
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            result.clamp_(0, 1)
        losses = {"content": content_loss.item(), "style": style_loss.item(), "total": loss.item()}
        if initial_style is None:
            initial_style = losses["style"]
        if progress is not None:
            progress(step + 1, request.steps)
    losses["initial_style"] = initial_style
    return result.detach().clamp(0, 1)[0], losses
