"""``random:<arch>`` pipelines: real diffusers classes with deterministic random weights.

They need no download and serve tests and pure latency/VRAM measurement. Tokenizers are built
in code (a byte-level CLIP BPE with no merges, a character-level T5 unigram), so nothing is
read from the hub. Every builder takes the device to build on: full-size presets are built
directly on the GPU (fast random init) or on ``meta`` (shape checks without memory). The weights
are deterministic per build device (CPU and CUDA draw different random streams), so a run builds
every load group on its own device, offloaded ones included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from t2ibench.registry import Registry

RANDOM_PIPELINES: Registry[Callable[..., object]] = Registry("random pipeline")

_SCHEDULER_KW = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}


@contextlib.contextmanager
def _building(device: str, seed: int = 0) -> Iterator[None]:
    """Seed the RNGs and create every parameter on ``device``."""
    import torch

    torch.manual_seed(seed)
    with torch.device(device):
        yield


def byte_level_clip_tokenizer(model_max_length: int = 77):
    """A CLIPTokenizer whose vocabulary is the 256 byte symbols (plus word-end forms), no merges.

    Every text tokenizes deterministically; ids stay below 514, inside any CLIP vocabulary.
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def char_level_t5_tokenizer(model_max_length: int = 512):
    """A T5Tokenizer (unigram) over the printable ASCII characters, each also with a word-start
    ``▁`` form; ids stay below 200."""
    from transformers import T5Tokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def _clip_text(hidden: int, layers: int, heads: int, projection: int | None = None, act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        hidden_size=hidden, intermediate_size=hidden * 4, num_attention_heads=heads,
        num_hidden_layers=layers, vocab_size=49408, max_position_embeddings=77,
        bos_token_id=512, eos_token_id=513, pad_token_id=513,  # as byte_level_clip_tokenizer: pooling finds the end
        projection_dim=projection or hidden, hidden_act=act,
    )
    model = CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)
    return model.eval()


def _t5_text(d_model: int, layers: int = 2, heads: int = 4):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=256, d_model=d_model, d_kv=d_model // heads, d_ff=d_model * 2, num_layers=layers,
                   num_heads=heads, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                   is_encoder_decoder=False, use_cache=False)
    return T5EncoderModel(cfg).eval()


def _vae(channels: tuple[int, ...], groups: int = 4, scaling_factor: float = 0.18215, latent_channels: int = 4,
         layers: int = 1, shift_factor: float | None = None, sample_size: int | None = None):
    """AutoencoderKL; 16-channel (SD3/Flux) VAEs have no quant convs and a shift factor, like the real ones."""
    from diffusers import AutoencoderKL

    flow = shift_factor is not None
    return AutoencoderKL(
        block_out_channels=list(channels), in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        layers_per_block=layers, norm_num_groups=groups, sample_size=sample_size or len(channels) * 8,
        scaling_factor=scaling_factor, shift_factor=shift_factor,
        use_quant_conv=not flow, use_post_quant_conv=not flow,
    ).eval()


def _tiny_unet(**kw):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16, **kw,
    ).eval()


@RANDOM_PIPELINES.register("tiny-sd")
def tiny_sd(device: str = "cpu"):
    """SD 1.x shape at toy size: UNet (32, 64), 4-level VAE (scale 8), 2-layer CLIP text encoder."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    with _building(device):
        unet = _tiny_unet(cross_attention_dim=32, attention_head_dim=8)
        vae, text = _vae((16, 16, 32, 32)), _clip_text(32, 2, 4)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=byte_level_clip_tokenizer(),
        unet=unet, scheduler=EulerDiscreteScheduler(**_SCHEDULER_KW),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


@RANDOM_PIPELINES.register("tiny-sdxl")
def tiny_sdxl(device: str = "cpu"):
    """SDXL shape at toy size: two text encoders, text-time conditioning, 4-level VAE."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    with _building(device):
        unet = _tiny_unet(
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
            cross_attention_dim=64,
        )
        vae = _vae((16, 16, 32, 32), scaling_factor=0.13025)
        text, text_2 = _clip_text(32, 2, 4), _clip_text(32, 2, 4, projection=32)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text, tokenizer=byte_level_clip_tokenizer(),
        text_encoder_2=text_2, tokenizer_2=byte_level_clip_tokenizer(),
        unet=unet, scheduler=EulerDiscreteScheduler(**_SCHEDULER_KW), force_zeros_for_empty_prompt=True,
    )


@RANDOM_PIPELINES.register("tiny-sd3")
def tiny_sd3(device: str = "cpu"):
    """SD3 shape at toy size: MMDiT, two CLIP encoders with projection plus T5, 16-channel VAE."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    with _building(device):
        transformer = SD3Transformer2DModel(
            sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
            num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
            pos_embed_max_size=16,
        ).eval()
        vae = _vae((16, 16, 32, 32), latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609)
        text, text_2, text_3 = _clip_text(32, 2, 4, projection=32), _clip_text(32, 2, 4, projection=32), _t5_text(64)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=text, tokenizer=byte_level_clip_tokenizer(),
        text_encoder_2=text_2, tokenizer_2=byte_level_clip_tokenizer(),
        text_encoder_3=text_3, tokenizer_3=char_level_t5_tokenizer(),
    )


def _tiny_pixart(sigma: bool, device: str):
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    with _building(device):
        transformer = PixArtTransformer2DModel(
            sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
            caption_channels=32, in_channels=4, out_channels=8, cross_attention_dim=24, attention_bias=True,
            activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
            norm_elementwise_affine=False, norm_eps=1e-6, interpolation_scale=2 if sigma else None,
        ).eval()
        vae = _vae((16, 16, 32, 32), scaling_factor=0.13025 if sigma else 0.18215)
        text = _t5_text(32)
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    return cls(transformer=transformer, vae=vae, text_encoder=text, tokenizer=char_level_t5_tokenizer(),
               scheduler=DPMSolverMultistepScheduler())


@RANDOM_PIPELINES.register("tiny-pixart")
def tiny_pixart(device: str = "cpu"):
    """PixArt-α shape at toy size: DiT with learned sigma (out_channels = 2 × in_channels), T5 text encoder."""
    return _tiny_pixart(False, device)


@RANDOM_PIPELINES.register("tiny-pixart-sigma")
def tiny_pixart_sigma(device: str = "cpu"):
    """PixArt-Σ shape at toy size (PixArtSigmaPipeline, SDXL-style VAE scaling)."""
    return _tiny_pixart(True, device)


@RANDOM_PIPELINES.register("tiny-flux")
def tiny_flux(device: str = "cpu"):
    """Flux shape at toy size: double- and single-stream blocks, guidance embedding, CLIP + T5, 16-channel VAE."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )

    with _building(device):
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
            axes_dims_rope=(4, 4, 8),
        ).eval()
        vae = _vae((16, 16, 32, 32), latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159)
        text, text_2 = _clip_text(32, 2, 4), _t5_text(32)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096,
        base_shift=0.5, max_shift=1.15,
    )
    return FluxPipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text,
                        tokenizer=byte_level_clip_tokenizer(), text_encoder_2=text_2,
                        tokenizer_2=char_level_t5_tokenizer())


# -- full-size presets for latency/VRAM measurement ------------------------------------------------
def _full_vae(sample_size: int, scaling_factor: float):
    """The SD/SDXL VAE architecture (83M): (128, 256, 512, 512), two layers per block, 4 latent channels."""
    return _vae((128, 256, 512, 512), groups=32, scaling_factor=scaling_factor, layers=2, sample_size=sample_size)


@RANDOM_PIPELINES.register("sd15")
def sd15(device: str = "cpu"):
    """Stable Diffusion 1.5 at full size: the 860M-parameter UNet, its VAE and the CLIP ViT-L/14 text encoder."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    with _building(device):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8).eval()
        vae, text = _full_vae(512, 0.18215), _clip_text(768, 12, 12)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=byte_level_clip_tokenizer(), unet=unet,
        scheduler=PNDMScheduler(**_SCHEDULER_KW, skip_prk_steps=True),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


@RANDOM_PIPELINES.register("sdxl")
def sdxl(device: str = "cpu"):
    """SDXL base at full size: the 2.6B-parameter UNet, its VAE, CLIP ViT-L/14 and OpenCLIP bigG/14 encoders."""
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    with _building(device):
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        ).eval()
        vae = _full_vae(1024, 0.13025)
        text, text_2 = _clip_text(768, 12, 12), _clip_text(1280, 32, 20, projection=1280, act="gelu")
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text, tokenizer=byte_level_clip_tokenizer(),
        text_encoder_2=text_2, tokenizer_2=byte_level_clip_tokenizer(), unet=unet,
        scheduler=EulerDiscreteScheduler(**_SCHEDULER_KW, timestep_spacing="leading"),
        force_zeros_for_empty_prompt=True,
    )


@RANDOM_PIPELINES.register("flux-dev")
def flux_dev(device: str = "cpu"):
    """FLUX.1-dev at full size, every part: the 11.9B-parameter transformer (19 double- and 38 single-stream
    blocks, 24 heads × 128, guidance embedding), the 16-channel VAE, CLIP ViT-L/14 and a T5-XXL-shaped
    encoder (24 layers, d_model 4096: 4.8B). About 17B parameters: built in fp32 then cast, so it needs
    about 68 GB on the build device (use ``precision: bf16`` on an 80 GB GPU); test it on ``meta``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    with _building(device):
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ).eval()
        vae = _vae((128, 256, 512, 512), groups=32, latent_channels=16, layers=2, scaling_factor=0.3611,
                   shift_factor=0.1159, sample_size=1024)
        text = _clip_text(768, 12, 12)
        t5 = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
        text_2 = T5EncoderModel(t5).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096,
        base_shift=0.5, max_shift=1.15,
    )
    return FluxPipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text,
                        tokenizer=byte_level_clip_tokenizer(), text_encoder_2=text_2,
                        tokenizer_2=char_level_t5_tokenizer())
