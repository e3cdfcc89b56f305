"""The torch backend's load-time weight knobs: ``quantize`` and ``layerwise_casting``.

Both wrap diffusers' own APIs; t2ibench has no quantizer of its own.

``quantize`` goes through diffusers' quantization configs (``TorchAoConfig``, ``BitsAndBytesConfig``,
``QuantoConfig``, and transformers' twins for the text encoders), gathered in one mapping per
pipeline component (:func:`quant_mapping`):

- a hub id or a folder: the mapping is passed to ``from_pretrained`` as a
  ``PipelineQuantizationConfig(quant_mapping=...)``: diffusers quantizes each component as it loads;
- a ``random:`` pipeline is built in code, so it has no checkpoint to load. Each chosen component
  is written with ``save_pretrained`` to a temporary folder and read back with
  ``from_pretrained(quantization_config=...)`` (:func:`quantize_built`). That is the very code path a
  hub component takes (the quantizer's environment checks, module replacement, per-parameter
  quantization while loading, its post-processing), so a random model measures what a hub model
  would. Driving diffusers' quantizer by hand on an already-built module
  (``DiffusersAutoQuantizer.preprocess_model`` and friends) would skip the per-parameter loading
  step where torchao and bitsandbytes actually quantize, i.e. a different path. The cost is one
  write and read of the component (fast for the tiny presets; for a full-size preset it needs
  the component's size free in the temporary folder, ``$TMPDIR``).

What cannot run here is a :class:`SkipConfig` with its reason (:func:`check_quantize`), never a
silent fallback. After loading, the weights are inspected (:func:`weight_kinds`): a requested
component with no quantized weight is an error, not a success.

``layerwise_casting`` calls diffusers' ``enable_layerwise_casting`` (weights stored in fp8, each layer
upcast to the config's precision for its forward).
"""

from __future__ import annotations

import collections
import importlib.util
import tempfile
from typing import Any

from t2ibench.errors import SkipConfig

DENOISERS = ("unet", "transformer")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
COMPONENT_NAMES = {"denoiser": DENOISERS, "text_encoder": TEXT_ENCODERS, "vae": ("vae",)}
PACKAGES = {"torchao": "torchao", "bitsandbytes": "bitsandbytes", "quanto": "optimum.quanto"}
INSTALL = "pip install 't2ibench[quant]'"
LAYERWISE_TEXT_ENCODER = ("layerwise_casting on text_encoder is not supported: transformers' text encoders report "
                          "their fp8 storage as their dtype, and the pipelines cast the prompt embeddings to it")
# parameter classes that are plain storage (their dtype says what they hold)
_PLAIN = ("Parameter", "Tensor")


def pipeline_names(components, present) -> list[str]:
    """The pipeline attributes that the knob's components (denoiser, text_encoder, vae) name, in ``present``."""
    return [n for c in components for n in COMPONENT_NAMES[c] if n in present]


# -- quantize -------------------------------------------------------------------------------------
def _package_missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a missing parent package (optimum)
        return True


def quantize_problem(opts, device: str | None) -> str | None:
    """Why ``opts`` cannot run on ``device`` (a package, or the GPU it needs), or None; with ``device`` None
    (not known yet), only the package is checked."""
    what = f"quantize {opts.type}" if opts.backend == "torchao" else f"quantize {opts.backend} {opts.type}"
    if _package_missing(PACKAGES[opts.backend]):
        return f"quantize backend '{opts.backend}' needs the {PACKAGES[opts.backend]} package: {INSTALL}"
    if device is None:
        return None
    cuda = device.startswith("cuda")
    if opts.backend == "bitsandbytes" and not cuda:
        return f"{what} needs a CUDA GPU (bitsandbytes quantizes on the GPU)"
    if opts.backend == "torchao" and opts.type.startswith("float8"):
        if not cuda:
            return f"{what} needs a CUDA GPU with compute capability >= 8.9"
        import torch

        if torch.cuda.get_device_capability(device) < (8, 9):
            return f"{what} needs a CUDA GPU with compute capability >= 8.9"
    if opts.backend == "torchao" and opts.type == "int4wo" and not cuda:
        return f"{what} needs a CUDA GPU (torchao's int4 weight-only kernels)"
    return None


def check_quantize(opts, device: str) -> None:
    """Raise :class:`SkipConfig` when ``opts`` cannot run on ``device`` (a package or the GPU it needs)."""
    problem = quantize_problem(opts, device)
    if problem:
        raise SkipConfig(problem)


def _torchao_type(name: str):
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        PerRow,
    )

    return {
        "int8wo": Int8WeightOnlyConfig, "int8dq": Int8DynamicActivationInt8WeightConfig,
        "float8wo": Float8WeightOnlyConfig, "int4wo": Int4WeightOnlyConfig,
        "float8dq": lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),  # row-wise scales
    }[name]()


def quant_config(opts, diffusers_model: bool, dtype=None):
    """The quantization config of one component: diffusers' class for a diffusers model, transformers'
    for a transformers one (the text encoders)."""
    if diffusers_model:
        from diffusers import BitsAndBytesConfig, QuantoConfig, TorchAoConfig
    else:
        from transformers import BitsAndBytesConfig, QuantoConfig, TorchAoConfig
    if opts.backend == "torchao":
        return TorchAoConfig(_torchao_type(opts.type))
    if opts.backend == "quanto":
        return QuantoConfig(weights_dtype=opts.type) if diffusers_model else QuantoConfig(weights=opts.type)
    if opts.type == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=opts.type,
                              **({"bnb_4bit_compute_dtype": dtype} if dtype is not None else {}))


def quant_mapping(opts, present: dict[str, bool], dtype=None) -> dict[str, Any]:
    """``{pipeline attribute: quantization config}``; ``present`` maps each attribute to "is a diffusers model"."""
    return {n: quant_config(opts, present[n], dtype) for n in pipeline_names(opts.components, present)}


def _is_diffusers_model(module) -> bool:
    return type(module).__module__.startswith("diffusers.")


def pipeline_quantization_config(opts, location: str, dtype):
    """A ``PipelineQuantizationConfig`` for ``from_pretrained`` of a hub id or folder.

    The component names come from the pipeline's ``model_index.json`` when it can be read;
    otherwise every name a component can have is mapped (diffusers ignores the absent ones).
    """
    from diffusers import DiffusionPipeline, PipelineQuantizationConfig

    try:
        index = DiffusionPipeline.load_config(location)
        present = {n: str(v[0]).startswith("diffusers") for n, v in index.items()
                   if isinstance(v, (list, tuple)) and len(v) == 2 and v[0] is not None}
    except Exception:  # not readable before loading: from_pretrained reports the real problem
        present = {n: n not in TEXT_ENCODERS for names in COMPONENT_NAMES.values() for n in names}
    mapping = quant_mapping(opts, present, dtype)
    if not mapping:
        raise SkipConfig(f"quantize: the pipeline '{location}' has none of the components {list(opts.components)}")
    return PipelineQuantizationConfig(quant_mapping=mapping)


def _reload(module, config, dtype, device: str):
    """``module`` written to a temporary folder and read back through ``from_pretrained(quantization_config=...)``."""
    kwargs: dict[str, Any] = {"quantization_config": config}
    if device.startswith("cuda"):  # quantize straight onto the GPU, as a hub model loaded with a device map does
        kwargs["device_map"] = {"": device}
    with tempfile.TemporaryDirectory(prefix="t2ibench-quantize-") as folder:
        module.save_pretrained(folder)
        if _is_diffusers_model(module):
            return type(module).from_pretrained(folder, torch_dtype=dtype, **kwargs).eval()
        return type(module).from_pretrained(folder, dtype=dtype, **kwargs).eval()


def quantize_built(pipe, opts, dtype, device: str) -> None:
    """Quantize the chosen components of a pipeline built in code (``random:``), through from_pretrained."""
    present = {n: _is_diffusers_model(m) for n, m in pipe.components.items() if hasattr(m, "save_pretrained")}
    mapping = quant_mapping(opts, present, dtype)
    if not mapping:
        raise SkipConfig(f"quantize: the pipeline has none of the components {list(opts.components)}")
    for name, config in mapping.items():
        setattr(pipe, name, _reload(getattr(pipe, name), config, dtype, device))


def weight_kinds(module) -> dict[str, int]:
    """How the module's parameters are stored: the tensor class for quantized ones (``Int8Tensor``,
    ``WeightQBytesTensor``, ``Params4bit``, ``GGUFParameter``…), else the dtype (``float32``, ``float8_e4m3fn``)."""
    counts: collections.Counter = collections.Counter()
    for p in module.parameters():
        kind = type(p).__name__
        counts[str(p.dtype).removeprefix("torch.") if kind in _PLAIN else kind] += 1
    return dict(sorted(counts.items()))


def _quantized(kinds: dict[str, int]) -> int:
    plain = {"float32", "float16", "bfloat16", "float64"}
    return sum(n for kind, n in kinds.items() if kind not in plain)


def config_name(opts, module=None) -> str:
    """The quantization config a component was loaded with, named as the suite does plus its class:
    ``torchao int8dq (Int8DynamicActivationInt8WeightConfig)``, ``bitsandbytes nf4``. The config is read
    from the loaded module's quantizer when it has one (what was applied), else from ``opts``."""
    config = getattr(getattr(module, "hf_quantizer", None), "quantization_config", None)
    detail = ""
    if config is not None and hasattr(config, "quant_type"):  # torchao: the AOBaseConfig instance (or its name)
        kind = config.quant_type
        detail = kind if isinstance(kind, str) else type(kind).__name__
    elif config is not None and getattr(config, "load_in_4bit", False):
        detail = f"4-bit {getattr(config, 'bnb_4bit_quant_type', '?')}"
    elif config is not None and getattr(config, "load_in_8bit", False):
        detail = "8-bit"
    elif config is not None:
        detail = str(getattr(config, "weights_dtype", None) or getattr(config, "weights", None) or "")
    return f"{opts.backend} {opts.type}" + (f" ({detail})" if detail and detail != opts.type else "")


def observe_quantized(pipe, opts) -> dict[str, Any]:
    """``applied``'s quantize entry: ``config`` (:func:`config_name`) and each quantized component's
    ``weight_kinds``; raises when a component has no quantized weight."""
    observed: dict[str, Any] = {}
    for name in pipeline_names(opts.components, pipe.components):
        kinds = weight_kinds(getattr(pipe, name))
        if not _quantized(kinds):
            raise RuntimeError(f"quantize {opts.backend} {opts.type}: '{name}' has no quantized weight after "
                               f"loading ({kinds})")
        observed.setdefault("config", config_name(opts, getattr(pipe, name)))
        observed[name] = kinds
    return observed


# -- layerwise casting ------------------------------------------------------------------------------
def apply_layerwise_casting(pipe, opts, dtype) -> dict[str, dict[str, int]]:
    """diffusers' ``enable_layerwise_casting`` on the chosen components; returns their storage dtypes after.

    Text encoders are refused (a skip): transformers models report their first parameter's dtype
    (fp8 here) as their ``dtype``, which the pipelines use for the prompt embeddings, so the
    denoiser would receive fp8 inputs.
    """
    import torch

    if "text_encoder" in opts.components:
        raise SkipConfig(LAYERWISE_TEXT_ENCODER)
    storage = getattr(torch, opts.storage)
    observed = {}
    for name in pipeline_names(opts.components, pipe.components):
        module = getattr(pipe, name)
        if not hasattr(module, "enable_layerwise_casting"):
            raise SkipConfig(f"layerwise_casting: {type(module).__name__} ('{name}') has no enable_layerwise_casting")
        module.enable_layerwise_casting(storage_dtype=storage, compute_dtype=dtype)
        kinds = weight_kinds(module)
        if not kinds.get(opts.storage):
            raise RuntimeError(f"layerwise_casting: '{name}' has no {opts.storage} weight after casting ({kinds})")
        observed[name] = kinds
    return observed
