"""Pipeline loading from a model spec: ``random:<arch>``, a local folder or file, or a hub id.

Hub ids go through the Hugging Face cache and honour ``HF_HUB_OFFLINE=1``. A model that can
be neither found nor downloaded is a user error that says how to get it.

A ``.gguf`` file is a denoiser alone (a GGUF-quantized Flux transformer, say): the ``base`` knob
names the pipeline it plugs into (a hub id, a folder, or ``random:<arch>``), whose own denoiser
is not loaded. The load-time knobs ``quantize``, ``layerwise_casting`` and ``offload: group`` are
applied here (see :mod:`.quantization`); what was observed of them is returned in ``facts``.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from pathlib import Path

from t2ibench.errors import SkipConfig, UserError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".gguf")
TINY_VAE_HUB = {"xl": "madebyollin/taesdxl", "sd": "madebyollin/taesd", "sd3": "madebyollin/taesd3", "flux": "madebyollin/taef1"}


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # random | dir | file | gguf | hub
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
            return cls("gguf" if path.suffix == ".gguf" else "file", str(path))
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


def _from_pretrained(location: str, dtype, hub: bool, trust_remote_code: bool = False, **components):
    """A hub or folder pipeline; ``trust_remote_code=True`` is passed only when the suite sets it.

    ``components``: more ``from_pretrained`` arguments (a ready denoiser, a ``quantization_config``)."""
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    extra = {"trust_remote_code": True} if trust_remote_code is True else {}
    extra.update(components)
    try:
        try:
            return AutoPipelineForText2Image.from_pretrained(location, dtype=dtype, **extra)
        except ValueError:  # a pipeline class the auto mapping does not know
            return DiffusionPipeline.from_pretrained(location, dtype=dtype, **extra)
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


def _random_pipeline(name: str, precision: str, device: str):
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

    # built on the run's device even when offloaded (diffusers then moves it to the CPU): CPU and CUDA
    # draw different random streams, and every config of a run must share the same weights
    pipe = RANDOM_PIPELINES.get(name)(device=device)
    if precision != "fp32":
        from diffusers.utils import logging as diffusers_logging

        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # its "keep in float32" advice is for hub checkpoints
        try:
            pipe.to(dtype=torch_dtype(precision))
        finally:
            diffusers_logging.set_verbosity(level)
    return pipe


def _denoiser_class(base: ModelSpec, pipe=None) -> tuple[str, type]:
    """The denoiser's pipeline attribute and class: from the built pipeline, or the base's model_index.json."""
    import diffusers
    from diffusers import DiffusionPipeline

    if pipe is not None:
        attr = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
        return attr, type(getattr(pipe, attr))
    try:
        index = DiffusionPipeline.load_config(base.value)
    except OSError as e:
        raise UserError(f"base '{base.value}': cannot read its model_index.json: {str(e).splitlines()[0]}") from e
    for attr in ("transformer", "unet"):
        entry = index.get(attr)
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and hasattr(diffusers, str(entry[1])):
            return attr, getattr(diffusers, entry[1])
    raise UserError(f"base '{base.value}' has no diffusers transformer or unet to replace with a GGUF file")


def _gguf_denoiser(path: str, cls: type, dtype, config: str, subfolder: str | None):
    """``cls.from_single_file`` of a GGUF file with diffusers' ``GGUFQuantizationConfig`` (compute in ``dtype``)."""
    import importlib.util

    from diffusers import GGUFQuantizationConfig

    if importlib.util.find_spec("gguf") is None:
        raise SkipConfig("a .gguf model needs the gguf package: pip install 't2ibench[quant]'")
    if not hasattr(cls, "from_single_file"):
        raise UserError(f"model '{path}': diffusers cannot load a {cls.__name__} from a single file")
    kwargs = {"subfolder": subfolder} if subfolder else {}
    try:
        return cls.from_single_file(path, quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
                                    config=config, torch_dtype=dtype, **kwargs).eval()
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"cannot load GGUF file '{path}' as a {cls.__name__}: {str(e).splitlines()[0]}") from e


def _from_gguf(spec: ModelSpec, base: str | None, precision: str, device: str, trust_remote_code: bool,
               pretrained_kwargs: dict):
    """A base pipeline whose denoiser is read from a GGUF file."""
    import tempfile

    if not base:
        raise UserError(f"model '{spec.value}' is a GGUF denoiser alone: name the pipeline it plugs into with "
                        "`base:` (a hub id, a folder or random:<arch>)")
    base_spec = check_model_spec(base)
    if base_spec.kind in ("file", "gguf"):
        raise UserError(f"base '{base}' must be a pipeline (a hub id, a folder or random:<arch>), not a file")
    dtype = torch_dtype(precision)
    if base_spec.is_random:
        pipe = _random_pipeline(base_spec.value, precision, device)
        attr, cls = _denoiser_class(base_spec, pipe)
        with tempfile.TemporaryDirectory(prefix="t2ibench-gguf-") as folder:
            getattr(pipe, attr).save_config(folder)
            setattr(pipe, attr, _gguf_denoiser(spec.value, cls, dtype, folder, None))
        return pipe
    attr, cls = _denoiser_class(base_spec)
    denoiser = _gguf_denoiser(spec.value, cls, dtype, base_spec.value, attr)
    return _from_pretrained(base_spec.value, dtype, hub=base_spec.kind == "hub", trust_remote_code=trust_remote_code,
                            **{attr: denoiser}, **pretrained_kwargs)


def _group_offload(pipe, opts, device: str) -> dict:
    """diffusers' ``enable_group_offload``: weights on the CPU, onloaded a group of blocks (or leaves) at a time."""
    import torch

    from t2ibench.backends.torch.quantization import DENOISERS

    pipe.to("cpu")  # the offload device; each group is onloaded to `device` in its forward
    level = f"{opts.level}_level"
    pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                              offload_type=level, use_stream=opts.streams,
                              num_blocks_per_group=opts.blocks_per_group if opts.level == "block" else None)
    denoiser = next(getattr(pipe, n) for n in DENOISERS if getattr(pipe, n, None) is not None)
    hooks = collections.Counter(name for m in denoiser.modules() if hasattr(m, "_diffusers_hook")
                                for name in m._diffusers_hook.hooks)
    if not hooks.get("group_offloading"):
        raise RuntimeError(f"offload group: no group_offloading hook on {type(denoiser).__name__} after enabling it")
    return {"offload_type": level, "hooks": dict(sorted(hooks.items())),
            "denoiser_devices": sorted({p.device.type for p in denoiser.parameters()})}


def load_pipeline(model: str, *, precision: str, vae: str = "default", offload="none", device: str = "cpu",
                  trust_remote_code: bool = False, quantize=None, layerwise_casting=None, base: str | None = None,
                  facts: dict | None = None):
    """Load the pipeline for one load key and place it on ``device`` (or set up offloading).

    Code shipped with a model (a custom pipeline) runs only with ``trust_remote_code=True``.
    ``quantize``, ``layerwise_casting``: the knobs' options (or None); ``offload``: none | model |
    sequential or a ``GroupOffload``; ``base``: the pipeline a ``.gguf`` denoiser plugs into.
    What was observed of the load-time knobs is added to ``facts`` (the engine's ``applied``).
    """
    from t2ibench.backends.torch import quantization

    facts = {} if facts is None else facts
    spec = ModelSpec.parse(model)
    dtype = torch_dtype(precision)
    group = not isinstance(offload, str)
    if offload != "none" and not device.startswith("cuda"):
        raise SkipConfig(f"offload '{'group' if group else offload}' needs a CUDA device")
    if base and spec.kind != "gguf":
        raise UserError(f"base '{base}' is only for a .gguf model (a denoiser alone), not for model '{model}'")
    if quantize is not None:
        from t2ibench.backends.torch.preflight import quantize_conflict

        quantization.check_quantize(quantize, device)
        conflict = quantize_conflict(spec.kind, quantize, vae, layerwise_casting)
        if conflict:
            raise SkipConfig(conflict)
    try:  # a kernel package that the quantizer imports only when it quantizes (torchao's int4 needs mslk)
        pretrained_kwargs = {}
        pipeline_location = spec.value if spec.kind in ("dir", "hub") else None
        if spec.kind == "gguf" and base and check_model_spec(base).kind in ("dir", "hub"):
            pipeline_location = base  # the base's other components load through from_pretrained
        if quantize is not None and pipeline_location is not None:
            pretrained_kwargs["quantization_config"] = quantization.pipeline_quantization_config(
                quantize, pipeline_location, dtype)
        if spec.kind == "random":
            pipe = _random_pipeline(spec.value, precision, device)
        elif spec.kind == "gguf":
            pipe = _from_gguf(spec, base, precision, device, trust_remote_code, pretrained_kwargs)
            facts["gguf"] = quantization.weight_kinds(
                next(getattr(pipe, n) for n in quantization.DENOISERS if getattr(pipe, n, None) is not None))
        elif spec.kind == "file":
            pipe = _from_single_file(spec.value, dtype)
        else:
            pipe = _from_pretrained(spec.value, dtype, hub=spec.kind == "hub", trust_remote_code=trust_remote_code,
                                    **pretrained_kwargs)
        if quantize is not None:
            if "quantization_config" not in pretrained_kwargs:  # built in code: through from_pretrained all the same
                quantization.quantize_built(pipe, quantize, dtype, device)
            facts["quantize"] = quantization.observe_quantized(pipe, quantize)
    except ImportError as e:
        if quantize is None and spec.kind != "gguf":
            raise
        what = f"quantize {quantize.backend} {quantize.type}" if quantize is not None else "a .gguf model"
        raise SkipConfig(f"{what} cannot run here: {str(e).splitlines()[0]}") from e
    if vae == "tiny":
        pipe.vae = _tiny_vae(pipe, check_model_spec(base) if spec.kind == "gguf" else spec, dtype)
    elif vae != "default":
        pipe.vae = _load_vae(vae, dtype)
    if layerwise_casting is not None:
        facts["layerwise_casting"] = quantization.apply_layerwise_casting(pipe, layerwise_casting, dtype)
    if offload == "none":
        pipe.to(device)
    elif group:
        facts["offload"] = _group_offload(pipe, offload, device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe
