"""The knobs of one configuration: every setting that changes how an image is generated.

:class:`Knobs` is flat, as a suite writes it: the knobs every backend understands
(:class:`CommonKnobs`), ``backend``, and the engine-specific knobs that each registered backend
declares in its own options model (for torch: attention, compile, tf32, channels_last, offload,
vae_upcast). A knob of another backend than the config's must stay at its default.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, create_model, field_validator, model_validator

from t2ibench.backends import BACKENDS
from t2ibench.backends.torch import ATTENTION, OFFLOAD, CompileOptions, compile_options  # noqa: F401
from t2ibench.base import Frozen
from t2ibench.registry import did_you_mean

SCHEDULERS: tuple[str, ...] = (
    "ddim", "pndm", "lms", "euler", "euler_a", "heun",
    "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_sde", "unipc", "lcm",
)
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")

# The knobs of the first store format, in their column order. A knob added later enters config_id
# only when it is set, so that every config written before it keeps its id (and its stored results).
V1_KNOBS: tuple[str, ...] = (
    "steps", "guidance_scale", "width", "height", "batch_size", "negative_prompt", "prompt_suffix", "precision",
    "tf32", "attention", "scheduler", "compile", "channels_last", "vae", "vae_slicing", "vae_tiling", "vae_upcast",
    "offload", "cache_text_embeddings", "model",
)

# Knobs that change how a config is measured, never what it generates: they stay out of config_id, so that
# turning one on (``run --profile``) resumes into the same configs and compares with runs without it.
MEASUREMENT_KNOBS: tuple[str, ...] = ("profile",)


class CommonKnobs(Frozen):
    """Knobs every backend understands. Defaults are what a config gets when the suite says nothing."""

    steps: int = Field(30, gt=0, le=1000)
    guidance_scale: float = Field(7.5, ge=0)
    width: int = Field(512, gt=0, le=8192)
    height: int = Field(512, gt=0, le=8192)
    batch_size: int = Field(1, gt=0, le=256)
    negative_prompt: Optional[str] = None
    prompt_suffix: str = ""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    scheduler: Optional[
        Literal["ddim", "pndm", "lms", "euler", "euler_a", "heun",
                "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_sde", "unipc", "lcm"]
    ] = None  # None keeps the pipeline's own scheduler
    vae: str = "default"  # default | tiny | a model spec
    vae_slicing: bool = False
    vae_tiling: bool = False
    cache_text_embeddings: bool = False
    model: Optional[str] = None  # a config may override the suite's model
    backend: str = "torch"
    profile: bool = False  # one more, untimed call traced by the engine's profiler (not part of config_id)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"must be a multiple of 8, got {v}")
        return v

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend '{v}'{did_you_mean(v, BACKENDS.names())}; "
                             f"backends: {', '.join(BACKENDS.names())}")
        return v

    @model_validator(mode="after")
    def _engine_knobs_of_own_backend(self) -> Any:
        own = BACKENDS.get(self.backend).options.model_fields
        for name, owner in ENGINE_KNOBS.items():
            if name not in own and name in self.model_fields_set and getattr(self, name) != _DEFAULTS[name]:
                raise ValueError(f"knob '{name}' belongs to backend '{owner}', not '{self.backend}'")
        return self

    @property
    def compile_options(self) -> Optional[CompileOptions]:
        return compile_options(self)

    def engine_options(self) -> Frozen:
        """The config's engine-specific knobs, as its backend's options model."""
        options = BACKENDS.get(self.backend).options
        return options.model_validate({k: getattr(self, k) for k in options.model_fields})

    def hashed(self) -> dict:
        """The knobs that define config_id: every V1 knob, and later knobs only when not at their default;
        never a measurement knob (``MEASUREMENT_KNOBS``)."""
        dumped = self.model_dump(mode="json")
        return {k: v for k, v in dumped.items()
                if k not in MEASUREMENT_KNOBS and (k in V1_KNOBS or v != _DEFAULT_JSON.get(k))}


def _engine_fields() -> tuple[dict[str, tuple], dict[str, str]]:
    fields: dict[str, tuple] = {}
    owners: dict[str, str] = {}
    for name, spec in BACKENDS.items():
        for key, info in spec.options.model_fields.items():
            if key in CommonKnobs.model_fields:
                raise ValueError(f"backend '{name}' redefines the common knob '{key}'")
            if key in fields and fields[key][0] != info.annotation:
                raise ValueError(f"backends '{owners[key]}' and '{name}' define knob '{key}' differently")
            fields.setdefault(key, (info.annotation, info))
            owners.setdefault(key, name)
    return fields, owners


_fields, ENGINE_KNOBS = _engine_fields()
Knobs = create_model("Knobs", __base__=CommonKnobs, __module__=__name__, **_fields)
Knobs.__doc__ = "Resolved knobs of one config: the common knobs plus every backend's engine knobs, flat."
_DEFAULTS: dict[str, Any] = {k: f.default for k, f in Knobs.model_fields.items()}
_DEFAULT_JSON: dict[str, Any] = Knobs().model_dump(mode="json")

KNOB_NAMES: tuple[str, ...] = (*V1_KNOBS, *(k for k in Knobs.model_fields if k not in V1_KNOBS))
"""Every knob, in results.csv's column order."""
