"""``random:<arch>`` pipelines: real diffusers classes with deterministic random weights.

They need no download and serve tests and pure latency/VRAM measurement. The tokenizer is
built in code (a byte-level CLIP BPE with no merges), so nothing is read from the hub.
"""

from __future__ import annotations

from typing import Callable

from t2ibench.registry import Registry

RANDOM_PIPELINES: Registry[Callable[[], object]] = Registry("random pipeline")

_SCHEDULER_KW = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def byte_level_clip_tokenizer(model_max_length: int = 77):
    """A CLIPTokenizer whose vocabulary is the 256 byte symbols (plus word-end forms), no merges.

    Every text tokenizes deterministically; ids stay below 518, inside any CLIP vocabulary.
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _clip_text(hidden: int, layers: int, heads: int, projection: int | None = None, seed: int = 0):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        hidden_size=hidden, intermediate_size=hidden * 4, num_attention_heads=heads,
        num_hidden_layers=layers, vocab_size=49408, max_position_embeddings=77,
        bos_token_id=516, eos_token_id=517, pad_token_id=517,
        projection_dim=projection or hidden, hidden_act="quick_gelu",
    )
    torch.manual_seed(seed)
    model = CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)
    return model.eval()


def _vae(channels: tuple[int, ...], seed: int = 0, groups: int = 4, scaling_factor: float = 0.18215):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=list(channels), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        layers_per_block=1, norm_num_groups=groups, sample_size=len(channels) * 8,
        scaling_factor=scaling_factor,
    ).eval()


@RANDOM_PIPELINES.register("tiny-sd")
def tiny_sd():
    """SD 1.x shape at toy size: UNet (32, 64), 4-level VAE (scale 8), 2-layer CLIP text encoder."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16,
    ).eval()
    return StableDiffusionPipeline(
        vae=_vae((16, 16, 32, 32)), text_encoder=_clip_text(32, 2, 4), tokenizer=byte_level_clip_tokenizer(),
        unet=unet, scheduler=EulerDiscreteScheduler(**_SCHEDULER_KW),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


@RANDOM_PIPELINES.register("tiny-sdxl")
def tiny_sdxl():
    """SDXL shape at toy size: two text encoders, text-time conditioning, 4-level VAE."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=16,
    ).eval()
    return StableDiffusionXLPipeline(
        vae=_vae((16, 16, 32, 32), scaling_factor=0.13025),
        text_encoder=_clip_text(32, 2, 4, seed=1), tokenizer=byte_level_clip_tokenizer(),
        text_encoder_2=_clip_text(32, 2, 4, projection=32, seed=2), tokenizer_2=byte_level_clip_tokenizer(),
        unet=unet, scheduler=EulerDiscreteScheduler(**_SCHEDULER_KW), force_zeros_for_empty_prompt=True,
    )
