"""The torch backend's knobs, as typed options (no torch import here).

Each knob is written flat in a suite (``quantize: int8wo``, ``cache: {method: first_block}``…).
The load-time knobs (precision, vae, offload, quantize, layerwise_casting, base) are part of the load
key; the others are applied per config and undone for the next. A knob added after the first
store format must dump to exactly what it dumped before when left at its default, so that
every existing ``config_id`` stays the same (see ``suites.knobs.V1_KNOBS``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union, get_args

from pydantic import Field, field_validator, model_serializer, model_validator

from t2ibench.base import Frozen, Off

# SDPA kernels and diffusers' processors (the first format) + diffusers' attention dispatcher backends.
# `flash` and `xformers` keep their first meaning (SDPA's flash kernel; xformers processors): the
# flash-attn 2 package through the dispatcher is `flash_attn`, flash-attn 3 is `flash3`.
SDPA_ATTENTION: tuple[str, ...] = ("sdpa", "math", "flash", "efficient", "sliced", "xformers")
DISPATCHER_ATTENTION: dict[str, str] = {  # knob value → diffusers' AttentionBackendName value
    "native": "native", "flash_attn": "flash", "flash3": "_flash_3", "sage": "sage", "flex": "flex",
    "cudnn": "_native_cudnn",
}
ATTENTION: tuple[str, ...] = (*SDPA_ATTENTION, *DISPATCHER_ATTENTION)
AttentionName = Literal[ATTENTION]  # type: ignore[valid-type]

WHOLE_OFFLOAD: tuple[str, ...] = ("none", "model", "sequential")  # the kinds written as one word
OFFLOAD: tuple[str, ...] = (*WHOLE_OFFLOAD, "group")


class _Additive(Frozen):
    """Options whose fields added later are dropped from the dump while at their default."""

    _added: tuple[str, ...] = ()

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict:
        data = handler(self)
        for name in self._added:
            if name in data and getattr(self, name) == type(self).model_fields[name].default:
                del data[name]
        return data


COMPILE_BACKENDS: tuple[str, ...] = ("inductor", "openvino", "tensorrt")
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompileOptions(_Additive):
    """``compile: {mode: max-autotune, fullgraph: true, regional: true, backend: inductor}``.

    ``regional: true`` compiles only the denoiser's repeated blocks (diffusers'
    ``compile_repeated_blocks``): one compiled block reused N times, so compiling takes seconds
    instead of minutes. ``backend``: torch.compile's backend: ``inductor`` (torch's own), ``openvino``
    (OpenVINO's torch.compile backend, CPU; the ``[openvino]`` extra) or ``tensorrt`` (torch-tensorrt,
    CUDA only). ``mode`` is inductor's.
    """

    _added = ("regional", "backend")

    mode: Optional[Literal[COMPILE_MODES]] = None  # type: ignore[valid-type]
    fullgraph: bool = False
    regional: bool = False
    backend: Literal[COMPILE_BACKENDS] = "inductor"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _mode_is_inductors(self) -> "CompileOptions":
        if self.mode is not None and self.backend != "inductor":
            raise ValueError(f"compile mode '{self.mode}' is inductor's; backend '{self.backend}' takes none")
        return self

    def torch_compile_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``torch.compile`` (and of ``Module.compile``) for these options."""
        if self.backend == "inductor":
            return {"mode": self.mode, "fullgraph": self.fullgraph}
        if self.backend == "openvino":
            return {"backend": "openvino", "fullgraph": self.fullgraph, "options": {"device": "CPU"}}
        return {"backend": "tensorrt", "fullgraph": self.fullgraph}


QUANTIZE_TYPES: dict[str, tuple[str, ...]] = {
    "torchao": ("int8wo", "int8dq", "float8wo", "float8dq", "int4wo"),
    "bitsandbytes": ("nf4", "fp4", "int8"),
    "quanto": ("int8", "float8", "int4"),
}
COMPONENTS: tuple[str, ...] = ("denoiser", "text_encoder", "vae")
Component = Literal[COMPONENTS]  # type: ignore[valid-type]


class QuantizeOptions(Frozen):
    """``quantize: int8wo`` (torchao) or ``{backend: bitsandbytes, type: nf4, components: [denoiser]}``.

    Applied through diffusers' quantization configs when the model loads (a quantized model is
    another load). ``text_encoder`` means every text encoder of the pipeline.
    """

    backend: Literal[tuple(QUANTIZE_TYPES)] = "torchao"  # type: ignore[valid-type]
    type: str
    components: tuple[Component, ...] = ("denoiser",)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _type_of_backend(self) -> "QuantizeOptions":
        types = QUANTIZE_TYPES[self.backend]
        if self.type not in types:
            raise ValueError(f"quantize type '{self.type}' is not one of {self.backend}'s: {', '.join(types)}")
        if not self.components or len(set(self.components)) != len(self.components):
            raise ValueError("quantize components must be a non-empty list without repeats")
        return self


class FirstBlockCache(Frozen):
    """Skip the remaining blocks of a step when the first block's output residual changed by less than
    ``threshold`` (relative L1) since the previous step (diffusers' FirstBlockCache; transformers)."""

    method: Literal["first_block"]
    threshold: float = Field(0.05, gt=0)


class TaylorSeerCache(Frozen):
    """Predict the blocks' outputs by a Taylor expansion between full steps (diffusers' TaylorSeer)."""

    method: Literal["taylorseer"]
    cache_interval: int = Field(5, ge=1)
    disable_cache_before_step: int = Field(3, ge=0)
    max_order: int = Field(1, ge=0, le=4)


class MagCache(Frozen):
    """Skip steps while the accumulated residual-magnitude error stays under ``threshold`` (diffusers' MagCache).

    It needs the model's magnitude ratios per step: ``mag_ratios`` from a calibration run, or
    ``calibrate: true`` to measure them (then nothing is skipped)."""

    method: Literal["magcache"]
    threshold: float = Field(0.06, gt=0)
    max_skip_steps: int = Field(3, ge=1)
    retention_ratio: float = Field(0.2, ge=0, le=1)
    mag_ratios: Optional[tuple[float, ...]] = None
    calibrate: bool = False


class FasterCache(Frozen):
    """Reuse attention outputs across steps and approximate the unconditional branch (diffusers' FasterCache)."""

    method: Literal["faster_cache"]
    spatial_attention_block_skip_range: int = Field(2, ge=1)
    spatial_attention_timestep_skip_range: tuple[int, int] = (-1, 681)
    unconditional_batch_skip_range: int = Field(5, ge=1)


class PyramidAttentionBroadcast(Frozen):
    """Broadcast attention outputs to the next steps inside a timestep window (diffusers' PAB)."""

    method: Literal["pab"]
    spatial_attention_block_skip_range: int = Field(2, ge=1)
    spatial_attention_timestep_skip_range: tuple[int, int] = (100, 800)


class DeepCache(Frozen):
    """Reuse the UNet's deep features and recompute the shallow branch (the ``deepcache`` package; UNets)."""

    method: Literal["deepcache"]
    cache_interval: int = Field(3, ge=1)
    cache_branch_id: int = Field(0, ge=0)


CACHE_KINDS = (FirstBlockCache, TaylorSeerCache, MagCache, FasterCache, PyramidAttentionBroadcast, DeepCache)
CacheOptions = Annotated[Union[CACHE_KINDS], Field(discriminator="method")]
CACHE_METHODS: tuple[str, ...] = tuple(get_args(k.model_fields["method"].annotation)[0] for k in CACHE_KINDS)


class LoraAdapter(Frozen):
    """One LoRA: ``{source: latent-consistency/lcm-lora-sdxl, scale: 1.0, fuse: false}``.

    ``source``: a hub id, a local ``.safetensors`` file, or ``random:<name>`` (a deterministic
    random adapter for tests). ``weight_name`` picks a file inside a hub repository."""

    source: str = Field(min_length=1)
    scale: float = 1.0
    fuse: bool = False
    weight_name: Optional[str] = None


class LayerwiseCasting(Frozen):
    """``layerwise_casting: {storage: float8_e4m3fn}``: weights stored in fp8, each layer upcast to the
    config's precision for its forward (diffusers' ``enable_layerwise_casting``)."""

    storage: Literal["float8_e4m3fn", "float8_e5m2"] = "float8_e4m3fn"
    components: tuple[Component, ...] = ("denoiser",)


class GroupOffload(Frozen):
    """``offload: group`` or ``offload: {kind: group, level: leaf, streams: true}``: diffusers' group
    offloading (weights move to the GPU a group of blocks at a time; with CUDA streams, overlapped)."""

    kind: Literal["group"] = "group"
    level: Literal["block", "leaf"] = "block"
    blocks_per_group: int = Field(1, ge=1)
    streams: bool = False

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"kind": data} if data == "group" else data


OffloadOption = Union[Literal[WHOLE_OFFLOAD], GroupOffload]  # type: ignore[valid-type]


class TorchOptions(Frozen):
    """Engine-specific knobs of the torch backend (written flat in a suite, like every knob)."""

    tf32: bool = False  # TF32 matmuls on CUDA; cuDNN convolutions keep torch's default (TF32) either way
    attention: AttentionName = "sdpa"
    compile: Union[bool, CompileOptions] = False
    channels_last: bool = False
    vae_upcast: bool = False
    offload: OffloadOption = "none"
    quantize: Annotated[Optional[QuantizeOptions], Off] = None  # none: no quantization
    cache: Annotated[Optional[CacheOptions], Off] = None
    lora: tuple[LoraAdapter, ...] = ()
    layerwise_casting: Annotated[Optional[LayerwiseCasting], Off] = None
    # the pipeline (a hub id, a folder, random:<arch>) that a .gguf denoiser plugs into
    base: Optional[str] = Field(None, min_length=1)

    @field_validator("compile")
    @classmethod
    def _plain_compile(cls, v: Union[bool, CompileOptions]) -> Union[bool, CompileOptions]:
        """``compile: {}`` (every option at its default) is ``compile: true``: one config, one id."""
        return True if v == CompileOptions() else v


def compile_options(options) -> Optional[CompileOptions]:
    """The config's compile settings, or None when it does not compile (or its backend has no ``compile``:
    the export engines reuse the torch engine's call)."""
    compile_ = getattr(options, "compile", False)
    return CompileOptions() if compile_ is True else compile_ or None
