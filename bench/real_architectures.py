"""Random-weight models of the *real* architectures, built offline, for benchmarks.

A GPU machine with no network can't download weights, but random weights of the
real architectures cost exactly what the real ones cost.  Configs follow the
published ones of stabilityai/sd-turbo (the SD 2.1 UNet, VAE and OpenCLIP ViT-H
text tower), OpenCLIP ViT-B-32 and torchvision VGG19.
"""

import torch

from aipic.models import tiny
from aipic.models.catalog import Catalog
from aipic.models.loading import VGG19_LAYERS, LoadedModel


def build_sd_turbo_architecture(device, dtype):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
        ).to(dtype)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=768,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        ).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
            max_position_embeddings=77, hidden_act="gelu", projection_dim=512, bos_token_id=49406, eos_token_id=49407, pad_token_id=0,
        )).to(dtype)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tiny.build_clip_tokenizer(), unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_taesd_architecture(device, dtype):
    """AutoencoderTiny with TAESD's configuration (diffusers' defaults), random weights."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    with torch.device(device):
        return AutoencoderTiny().to(dtype)


def build_clip_architecture(device):
    import open_clip

    torch.manual_seed(0)
    precision = "fp16" if torch.device(device).type == "cuda" else "fp32"  # as aipic.models.loading.load_clip
    model = open_clip.create_model("ViT-B-32", pretrained=None, device=device, precision=precision).eval()
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    return model, preprocess, open_clip.get_tokenizer("ViT-B-32")


def build_safety_checker_architecture(device, dtype):
    """The Stable Diffusion safety checker's architecture (CLIP ViT-L/14 image tower, as in
    CompVis/stable-diffusion-safety-checker), random weights; its thresholds set to flag nothing, so the benchmark
    signs every image while paying the checker's full cost."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24, "image_size": 224, "patch_size": 14},
        projection_dim=768,
    )
    with torch.device(device):
        checker = StableDiffusionSafetyChecker(config).to(dtype).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(1e4)
        checker.special_care_embeds_weights.fill_(1e4)
    return checker


def build_vgg19_features(device):
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return vgg19(weights=None).features[: max(VGG19_LAYERS.values()) + 1].eval().to(device)


def install_real_architectures(pipeline, catalog: Catalog, tiny_decoder: bool = False) -> None:
    """Put random-weight real-architecture models into an AipicPipeline's registry, in place of the defaults,
    prepared as aipic prepares loaded weights (the CUDA fast path; torch.compile if the pipeline's settings ask)."""
    from aipic.models.loading import prepare_for_gpu

    device = pipeline.models.device
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    note = "random weights of the real architecture (benchmark only)"
    t2i = catalog.entry("text_to_image")
    pipe = build_sd_turbo_architecture(device, dtype)
    if tiny_decoder:
        pipe.vae = build_taesd_architecture(device, dtype)
    pipe = prepare_for_gpu(pipe, compile=pipeline.settings.compile)
    pipeline.models.register(LoadedModel(t2i, pipe, placeholder=True, note=note))
    model, preprocess, tokenizer = build_clip_architecture(device)
    pipeline.models.register(LoadedModel(catalog.entry("clip"), model, placeholder=True, note=note, extra={"preprocess": preprocess, "tokenizer": tokenizer}))
    pipeline.models.register(LoadedModel(catalog.entry("style"), build_vgg19_features(device), placeholder=True, note=note, extra={"layers": VGG19_LAYERS}))
    pipeline.models.register(LoadedModel(catalog.entry("safety"), build_safety_checker_architecture(device, dtype), placeholder=True, note=note))
