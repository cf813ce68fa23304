"""Tiny random-weight models, built deterministically offline.

They have the real architectures (Stable Diffusion, OpenCLIP, a VGG-style
network) at a tiny size, so the whole pipeline runs on a CPU without any
download.  Their outputs are meaningless noise: aipic labels them as
placeholders everywhere they appear.
"""

import gzip
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

TINY_SEED = 0
CLIP_CONTEXT_LENGTH = 77
CLIP_VOCAB_SIZE = 49408


def open_clip_bpe_path() -> Path:
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> list[str]:
    # The byte -> printable character table of GPT-2 / CLIP BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_clip_tokenizer():
    """A transformers CLIPTokenizer built from the BPE vocabulary that open_clip ships."""
    from transformers import CLIPTokenizer

    with gzip.open(open_clip_bpe_path(), "rt", encoding="utf-8") as handle:
        merges = handle.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    merge_pairs = [tuple(line.split()) for line in merges]
    vocab = _bytes_to_unicode()
    vocab = vocab + [token + "</w>" for token in vocab] + ["".join(pair) for pair in merge_pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps({token: index for index, token in enumerate(vocab)}))
        merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=CLIP_CONTEXT_LENGTH)


def build_tiny_stable_diffusion(seed: int = TINY_SEED):
    """A StableDiffusionPipeline with tiny random weights (VAE downscale 8, like the real one)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=256,
        )
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=CLIP_VOCAB_SIZE,
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=CLIP_CONTEXT_LENGTH,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
            )
        )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]  # a DiffusionPipeline method that the stubs miss
    return pipe


def build_tiny_clip(seed: int = TINY_SEED):
    """(model, preprocess, tokenizer) of a tiny random-weight OpenCLIP model."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(
            embed_dim=32,
            vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=16, image_size=64),
            text_cfg=CLIPTextCfg(context_length=CLIP_CONTEXT_LENGTH, vocab_size=CLIP_VOCAB_SIZE, width=32, heads=4, layers=2),
        )
    model.eval()
    preprocess = open_clip.image_transform(64, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # SimpleTokenizer: uses the shipped BPE file, no download
    return model, preprocess, tokenizer


def build_tiny_safety_checker(seed: int = TINY_SEED, flag_everything: bool = False):
    """diffusers' StableDiffusionSafetyChecker with a tiny random CLIP inside. Random weights cannot judge
    anything, so its concept thresholds are set to flag nothing (or, for tests, everything)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 49408},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2, "image_size": 224, "patch_size": 32},
        projection_dim=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        checker = StableDiffusionSafetyChecker(config)
    threshold = -1e4 if flag_everything else 1e4
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    return checker.eval()


# name -> index in the feature stack, for the tiny VGG-style network (mirrors VGG19's conv{n}_1 + conv4_2).
TINY_VGG_LAYERS = {"conv1_1": 0, "conv2_1": 3, "conv3_1": 6, "conv4_1": 9, "conv4_2": 11, "conv5_1": 14}


def build_tiny_vgg(seed: int = TINY_SEED) -> nn.Sequential:
    """A small VGG-style feature stack with random weights."""
    widths: list = [(3, 8), None, "pool", (8, 16), None, "pool", (16, 16), None, "pool", (16, 32), None, (32, 32), None, "pool", (32, 32)]
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for item in widths:
            if item is None:
                layers.append(nn.ReLU())
            elif item == "pool":
                layers.append(nn.AvgPool2d(2))
            else:
                layers.append(nn.Conv2d(item[0], item[1], kernel_size=3, padding=1))
    return nn.Sequential(*layers).eval()
