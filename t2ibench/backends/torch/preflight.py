"""The torch backend's preflight: what can be told about a config without loading its model.

:func:`preflight` returns :class:`~t2ibench.backends.Finding`\\ s: the errors a run would meet (a LoRA
file that does not exist, a hub LoRA not in the cache while offline, ``base:`` without a ``.gguf``
model) and the combinations the engine always skips, with the engine's own reason: quantize and
layerwise casting on one component, a cache with compile, layerwise casting on text encoders, a
transformer cache on a UNet (when the model's denoiser is known without loading it), a missing
package (torchao, DeepCache, xformers, gguf…) with the pip extra that installs it, and, once the
device is known, the knobs that need CUDA.

The engine raises its skips from the same functions and constants (:func:`quantize_conflict`,
:data:`CACHE_WITH_COMPILE`…), so the preflight and the run say the same thing. No torch import here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Optional

from t2ibench.backends import Finding
from t2ibench.backends.torch.attention import CUDA_ONLY

CACHE_WITH_COMPILE = ("cache together with compile is not supported yet: the skipped blocks are counted in Python, "
                      "which compiled code guards on and recompiles for")
TRANSFORMER_CACHES = ("first_block", "taylorseer", "magcache", "faster_cache", "pab")
# the denoiser class of each random: pipeline (tests check this against the built pipelines)
RANDOM_DENOISERS = {
    "tiny-sd": "UNet2DConditionModel", "tiny-sdxl": "UNet2DConditionModel", "sd15": "UNet2DConditionModel",
    "sdxl": "UNet2DConditionModel", "tiny-sd3": "SD3Transformer2DModel", "tiny-pixart": "PixArtTransformer2DModel",
    "tiny-pixart-sigma": "PixArtTransformer2DModel", "tiny-flux": "FluxTransformer2DModel",
    "flux-dev": "FluxTransformer2DModel",
}


# denoisers whose attention processors do not go through diffusers' dispatcher (README: the SD/SDXL UNet, SD3)
NO_DISPATCHER = ("UNet2DConditionModel", "SD3Transformer2DModel")
DISPATCHER_PACKAGES = {"sage": ("sageattention", "sageattention"), "flash_attn": ("flash_attn", "flash-attn")}


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ModuleNotFoundError, ValueError):
        return True


def quantize_conflict(kind: str, quantize, vae: str, layerwise_casting) -> Optional[str]:
    """Why ``quantize`` cannot run with this model kind (``dir``, ``hub``, ``file``, ``gguf``, ``random``), ``vae``
    and ``layerwise_casting``, whatever the machine; None when it can."""
    if kind == "gguf" and "denoiser" in quantize.components:
        return "quantize denoiser: the denoiser of a .gguf model is already quantized by its file"
    if kind == "file":
        return "quantize is not supported for a single-file checkpoint (.safetensors/.ckpt)"
    if "vae" in quantize.components and vae != "default":
        return f"quantize vae with vae '{vae}': the replacement VAE would not be quantized"
    both = set(quantize.components) & set(layerwise_casting.components if layerwise_casting else ())
    if both:
        return f"quantize and layerwise_casting both on {', '.join(sorted(both))}: choose one per component"
    return None


def denoiser_class(model: str, kind: str) -> tuple[Optional[str], Optional[str]]:
    """(pipeline attribute, class name) of the model's denoiser when it is known without loading anything:
    a ``random:`` preset, or the ``model_index.json`` of a folder or of a hub model in the local cache."""
    if kind == "random":
        cls = RANDOM_DENOISERS.get(model.removeprefix("random:"))
        return (None, None) if cls is None else ("unet" if cls.startswith("UNet") else "transformer", cls)
    index: Optional[Path] = None
    if kind == "dir":
        index = Path(model).expanduser() / "model_index.json"
    elif kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model, "model_index.json")
            index = Path(hit) if isinstance(hit, str) else None
        except (ImportError, ValueError):
            index = None
    try:
        data = json.loads(index.read_text()) if index is not None else {}
    except (OSError, ValueError):
        data = {}
    for attr in ("transformer", "unet"):
        entry = data.get(attr) if isinstance(data, dict) else None
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], str):
            return attr, entry[1]
    return None, None


def cache_problem(opts, attr: Optional[str], cls: Optional[str]) -> Optional[str]:
    """Why the cache ``opts`` cannot run on this denoiser (as the engine's skip says), or None (or not known)."""
    method = opts.method
    if method == "deepcache":
        if _missing("DeepCache"):
            return "cache 'deepcache' needs the DeepCache package (pip install 't2ibench[cache]')"
        if attr == "transformer":
            return f"cache 'deepcache' needs a UNet denoiser (SD 1.x/2.x, SDXL), not {cls}"
        return None
    if attr is None:
        return None
    if attr == "unet":
        return f"cache '{method}' needs a transformer denoiser (Flux, SD3…), not {cls}"
    if method in ("first_block", "magcache") and cls == "SD3Transformer2DModel":
        tail = ("which diffusers' FirstBlockCache subtracts" if method == "first_block" else "")
        return (f"cache '{method}' fails in diffusers on {cls}: its last block returns no text states "
                f"(context_pre_only)" + (f", {tail}" if tail else ""))
    if method == "magcache" and opts.mag_ratios is None and not opts.calibrate and "Flux" not in cls:
        return (f"cache 'magcache' needs magnitude ratios for {cls}: set cache.mag_ratios (from a calibration run) "
                "or cache.calibrate: true")
    if method == "faster_cache" and "3D" not in cls:
        return (f"cache 'faster_cache': diffusers' FasterCache handles video denoisers (5-D latents) only, "
                f"not {cls}")
    return None


def _kind(model: str) -> Optional[str]:
    from t2ibench.backends.torch.loading import ModelSpec
    from t2ibench.errors import UserError

    try:
        return ModelSpec.parse(model).kind
    except UserError:  # a missing model file: the model check reports it
        return None


def preflight(model: str, knobs: Any, device: Optional[str] = None) -> list[Finding]:
    """Findings about one config (see the module docstring); ``device`` None: not known yet."""
    from t2ibench.backends.torch.lora import MIXED_FUSE, source_problem
    from t2ibench.backends.torch.options import DISPATCHER_ATTENTION, compile_options
    from t2ibench.backends.torch.quantization import LAYERWISE_TEXT_ENCODER, quantize_problem
    from t2ibench.backends.torch.schedulers import SCHEDULERS

    out: list[Finding] = []
    skip = lambda knob, message: out.append(Finding("skip", knob, message))  # noqa: E731
    kind = _kind(model)
    opts = knobs.options  # the torch backend's own knobs
    cuda = None if device is None else device.startswith("cuda")
    # load-time knobs
    if opts.base and kind is not None and kind != "gguf":
        out.append(Finding("error", "base", f"base '{opts.base}' is only for a .gguf model (a denoiser alone), "
                                            f"not for model '{model}'"))
    if kind == "gguf" and not opts.base:
        out.append(Finding("error", "model", f"model '{model}' is a GGUF denoiser alone: name the pipeline it plugs "
                                             "into with `base:` (a hub id, a folder or random:<arch>)"))
    if kind == "gguf" and _missing("gguf"):
        skip("model", "a .gguf model needs the gguf package: pip install 't2ibench[quant]'")
    if opts.offload != "none" and cuda is False:
        skip("offload", f"offload '{'group' if not isinstance(opts.offload, str) else opts.offload}' "
                        "needs a CUDA device")
    if opts.quantize is not None:
        why = quantize_problem(opts.quantize, device) or (
            quantize_conflict(kind, opts.quantize, knobs.vae, opts.layerwise_casting) if kind else None)
        if why:
            skip("quantize", why)
    if opts.layerwise_casting is not None and "text_encoder" in opts.layerwise_casting.components:
        skip("layerwise_casting", LAYERWISE_TEXT_ENCODER)
    # runtime knobs
    if opts.tf32 and cuda is False:
        skip("tf32", "tf32 needs a CUDA device")
    if knobs.scheduler:
        needs = SCHEDULERS.get(knobs.scheduler).needs
        if needs and _missing(needs):
            skip("scheduler", f"scheduler '{knobs.scheduler}' needs the '{needs}' package (pip install {needs})")
    known = kind is not None and kind != "gguf" and (opts.cache is not None or opts.attention in DISPATCHER_ATTENTION)
    attr, cls = denoiser_class(model, kind) if known else (None, None)
    if opts.attention == "xformers" and _missing("xformers"):
        skip("attention", "attention 'xformers' needs the xformers package (pip install 't2ibench[xformers]')")
    elif opts.attention in ("flash", "efficient") and cuda is False:
        skip("attention", f"attention '{opts.attention}' needs a CUDA device")
    elif opts.attention in DISPATCHER_ATTENTION:
        if cls in NO_DISPATCHER:
            skip("attention", f"attention '{opts.attention}' is a diffusers dispatcher backend, and {cls}'s attention "
                              "processors do not call the dispatcher")
        elif opts.attention in DISPATCHER_PACKAGES and _missing(DISPATCHER_PACKAGES[opts.attention][0]):
            module, dist = DISPATCHER_PACKAGES[opts.attention]
            skip("attention", f"attention '{opts.attention}' needs the {module} package (pip install {dist})")
        elif opts.attention in CUDA_ONLY and cuda is False:
            skip("attention", f"attention '{opts.attention}' needs a CUDA device")
    compiled = compile_options(opts)
    if compiled is not None:
        from t2ibench.backends.torch.compile_backends import backend_problem

        why = backend_problem(compiled.backend, cuda)
        if why:
            skip("compile", why)
    if opts.cache is not None:
        if compiled is not None:
            skip("cache", CACHE_WITH_COMPILE)
        else:
            why = cache_problem(opts.cache, attr, cls)
            if why:
                skip("cache", why)
    if opts.lora:
        if _missing("peft"):
            skip("lora", "lora needs the peft package (pip install peft)")
        if len({a.fuse for a in opts.lora}) > 1:
            skip("lora", MIXED_FUSE)
        for i, adapter in enumerate(opts.lora):
            problem = source_problem(adapter)
            if problem:
                out.append(Finding("error", "lora", problem, (i, "source")))
    return out
