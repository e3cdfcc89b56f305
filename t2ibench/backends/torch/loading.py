"""Pipeline loading from a model spec: ``random:<arch>``, a local folder or file, or a hub id.

Hub ids go through the Hugging Face cache and honour ``HF_HUB_OFFLINE=1``. A model that can
be neither found nor downloaded is a user error that says how to get it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from t2ibench.errors import SkipConfig, UserError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
TINY_VAE_HUB = {"xl": "madebyollin/taesdxl", "sd": "madebyollin/taesd", "sd3": "madebyollin/taesd3", "flux": "madebyollin/taef1"}


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # random | dir | file | hub
    value: str

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        if spec.startswith("random:"):
            return cls("random", spec.removeprefix("random:"))
        path = Path(spec).expanduser()
        if path.is_dir():
            return cls("dir", str(path))
        if path.suffix in SINGLE_FILE_SUFFIXES:
            if not path.is_file():
                raise UserError(f"model file '{spec}' does not exist")
            return cls("file", str(path))
        if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
            raise UserError(f"model folder '{spec}' does not exist")
        return cls("hub", spec)

    @property
    def is_random(self) -> bool:
        return self.kind == "random"


def check_model_spec(model: str) -> ModelSpec:
    """Parse a spec and check what can be checked without loading (random names, local paths)."""
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES
    from t2ibench.registry import did_you_mean

    spec = ModelSpec.parse(model)
    if spec.is_random and spec.value not in RANDOM_PIPELINES:
        names = [f"random:{n}" for n in RANDOM_PIPELINES.names()]
        raise UserError(f"unknown model '{model}'{did_you_mean(model, names)}; random pipelines: {', '.join(names)}")
    return spec


def torch_dtype(precision: str):
    import torch

    return getattr(torch, DTYPES[precision])


def _from_pretrained(location: str, dtype, hub: bool):
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    try:
        try:
            return AutoPipelineForText2Image.from_pretrained(location, dtype=dtype)
        except ValueError:  # a pipeline class the auto mapping does not know
            return DiffusionPipeline.from_pretrained(location, dtype=dtype)
    except OSError as e:
        if hub:
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
            why = "HF_HUB_OFFLINE is set" if offline else "it could not be downloaded"
            raise UserError(
                f"model '{location}' is not in the Hugging Face cache and {why}; "
                f"fetch it with `hf download {location}` on a connected machine, or give a local save_pretrained folder"
            ) from e
        raise UserError(f"cannot load pipeline from '{location}': {str(e).splitlines()[0]}") from e


def _from_single_file(path: str, dtype):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if "xl" in Path(path).name.lower() else StableDiffusionPipeline
    try:
        return cls.from_single_file(path, dtype=dtype)
    except Exception as e:  # diffusers raises many kinds here; all mean "cannot load this file"
        raise UserError(f"cannot load single-file checkpoint '{path}' as {cls.__name__}: {str(e).splitlines()[0]}") from e


def _tiny_vae(pipe, spec: ModelSpec, dtype):
    """AutoencoderTiny matching the pipeline family: taesd/taesdxl by hub id, random for random: models."""
    from diffusers import AutoencoderTiny

    name = type(pipe).__name__
    family = ("flux" if "Flux" in name else "sd3" if "StableDiffusion3" in name
              else "xl" if "XL" in name or "Sigma" in name else "sd")
    if spec.is_random:
        import torch

        torch.manual_seed(0)
        latent_channels = pipe.vae.config.latent_channels
        return AutoencoderTiny(latent_channels=latent_channels, encoder_block_out_channels=(8, 8, 8, 8),
                               decoder_block_out_channels=(8, 8, 8, 8), num_encoder_blocks=(1, 1, 1, 1),
                               num_decoder_blocks=(1, 1, 1, 1)).to(dtype)
    return _load_vae(TINY_VAE_HUB[family], dtype)


def _load_vae(spec_str: str, dtype):
    from diffusers import AutoencoderKL, AutoencoderTiny

    spec = ModelSpec.parse(spec_str)
    if spec.is_random:
        raise UserError(f"vae '{spec_str}': only 'vae: tiny' has a random variant")
    last = None
    for cls in (AutoencoderKL, AutoencoderTiny):
        try:
            return cls.from_pretrained(spec.value, dtype=dtype)
        except (OSError, ValueError) as e:
            last = e
    raise UserError(f"cannot load vae '{spec_str}': {str(last).splitlines()[0]}")


def load_pipeline(model: str, *, precision: str, vae: str = "default", offload: str = "none", device: str = "cpu"):
    """Load the pipeline for one load key and place it on ``device`` (or set up offloading)."""
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

    spec = ModelSpec.parse(model)
    dtype = torch_dtype(precision)
    if offload != "none" and not device.startswith("cuda"):
        raise SkipConfig(f"offload '{offload}' needs a CUDA device")
    if spec.kind == "random":
        # built on the run's device even when offloaded (diffusers then moves it to the CPU): CPU and CUDA
        # draw different random streams, and every config of a run must share the same weights
        pipe = RANDOM_PIPELINES.get(spec.value)(device=device)
        if precision != "fp32":
            from diffusers.utils import logging as diffusers_logging

            level = diffusers_logging.get_verbosity()
            diffusers_logging.set_verbosity_error()  # its "keep in float32" advice is for hub checkpoints
            try:
                pipe.to(dtype=dtype)
            finally:
                diffusers_logging.set_verbosity(level)
    elif spec.kind == "file":
        pipe = _from_single_file(spec.value, dtype)
    else:
        pipe = _from_pretrained(spec.value, dtype, hub=spec.kind == "hub")
    if vae == "tiny":
        pipe.vae = _tiny_vae(pipe, spec, dtype)
    elif vae != "default":
        pipe.vae = _load_vae(vae, dtype)
    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe
