"""The knobs of one configuration: every setting that changes how an image is generated.

A suite writes knobs flat (``steps: 4``, ``attention: flash``). Inside, :class:`Knobs` holds the
knobs every backend understands (:class:`CommonKnobs`) and ``options``: the config's backend's own
options model (for torch: attention, compile, tf32, quantize, cache, lora…), validated by that model.
A knob of another backend than the config's is an error unless it is at that backend's default
(so that a matrix may cross backends). Knobs dump flat again, exactly as before the split, so every
``config_id`` stays the same (``tests/test_config_ids_stable.py``). No engine module is imported
here: backends are read through their cheap declarations.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Optional

from pydantic import BaseModel, BeforeValidator, Field, SerializeAsAny, field_validator, model_serializer, \
    model_validator
from pydantic.fields import FieldInfo

from t2ibench.backends import BACKENDS, NoOptions
from t2ibench.backends.common import PRECISIONS, SCHEDULERS, PrecisionName, SchedulerName  # noqa: F401
from t2ibench.backends.upscale import UpscaleOptions
from t2ibench.base import Frozen, Off
from t2ibench.registry import did_you_mean
from t2ibench.suites.scenario import Scenario, SingleStream, scenario_input

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
    precision: PrecisionName = "fp32"
    scheduler: Optional[SchedulerName] = None  # None keeps the pipeline's own scheduler
    vae: str = "default"  # default | tiny | a model spec
    vae_slicing: bool = False
    vae_tiling: bool = False
    cache_text_embeddings: bool = False
    model: Optional[str] = None  # a config may override the suite's model
    backend: str = "torch"
    # after generation, for every backend: {method: lanczos|bicubic, scale: 2} or {model: SPEC}; none is off
    upscale: Annotated[Optional[UpscaleOptions], Off] = None
    profile: bool = False  # one more, untimed call traced by the engine's profiler (not part of config_id)
    # how requests arrive: single_stream (in process), or offline | server | concurrency | trace over HTTP
    scenario: Annotated[Scenario, BeforeValidator(scenario_input)] = SingleStream()

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


COMMON: tuple[str, ...] = tuple(CommonKnobs.model_fields)


class Knobs(CommonKnobs):
    """Resolved knobs of one config: the common knobs, and ``options``, its backend's own options model.

    Validated from and dumped to one flat mapping (``options`` never appears in a dump).
    """

    options: SerializeAsAny[Frozen] = Field(default_factory=NoOptions)

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """Flat knobs → common knobs + ``options`` (the rest); refuse another backend's knobs."""
        if not isinstance(data, dict):
            return data
        flat = dict(data)
        nested = flat.pop("options", None)
        if isinstance(nested, BaseModel):
            nested = nested.model_dump()
        flat = {**(nested or {}), **flat}
        rest = {k: v for k, v in flat.items() if k not in COMMON}
        backend = flat.get("backend", "torch")
        if rest.get("endpoint") == "self":  # t2ibench serves a local backend's config itself: the default
            if backend == "http":
                raise ValueError("endpoint: self serves a local backend's config (torch, openvino, onnxruntime); "
                                 "backend http needs endpoint: {url: http://host:port}")
            del rest["endpoint"]
        if isinstance(backend, str) and backend in BACKENDS:
            own = BACKENDS.get(backend).options.model_fields
            for name in [k for k in rest if k not in own]:
                owner = knob_owner(name)
                if owner is None:
                    continue  # unknown: the options model says so, with the key's location
                if not _at_default(owner, name, rest[name]):
                    raise ValueError(f"knob '{name}' belongs to backend '{owner}', not '{backend}'")
                del rest[name]
        return {**{k: v for k, v in flat.items() if k in COMMON}, "options": rest}

    @field_validator("options", mode="before")
    @classmethod
    def _own_options(cls, value: Any, info) -> Any:
        backend = info.data.get("backend")
        if backend is None:  # the backend itself is wrong: that error is the one to read
            return NoOptions()
        model = BACKENDS.get(backend).options
        return value if isinstance(value, model) else model.model_validate(value)

    @model_serializer(mode="wrap")
    def _flat(self, handler) -> dict:
        data = handler(self)
        return {**{k: v for k, v in data.items() if k != "options"}, **data.get("options", {})}

    def knob(self, name: str) -> Any:
        """A knob by name, common or the backend's own (None when the backend has no such knob)."""
        return getattr(self, name) if name in COMMON else getattr(self.options, name, None)

    def replace(self, **changes: Any) -> "Knobs":
        """These knobs with some changed (flat names), validated again."""
        return Knobs.model_validate({**self.model_dump(), **changes})

    def hashed(self) -> dict:
        """The knobs that define config_id: every V1 knob, and later knobs only when not at their default;
        never a measurement knob (``MEASUREMENT_KNOBS``)."""
        defaults = _default_json(self.backend)
        return {k: v for k, v in self.model_dump(mode="json").items()
                if k not in MEASUREMENT_KNOBS and (k in V1_KNOBS or v != defaults.get(k))}


def knob_owner(name: str) -> Optional[str]:
    """The first registered backend whose options have knob ``name`` (None for common or unknown knobs)."""
    return next((b for b, spec in BACKENDS.items() if name in spec.options.model_fields), None)


def knob_field(name: str) -> FieldInfo:
    """The field that declares knob ``name`` (common, or its first owner's)."""
    if name in COMMON:
        return CommonKnobs.model_fields[name]
    return BACKENDS.get(knob_owner(name)).options.model_fields[name]


def knob_default(name: str, backend: str = "torch") -> Any:
    """Knob ``name``'s default for a config of ``backend``; None where that backend has no such knob."""
    if name in COMMON:
        return CommonKnobs.model_fields[name].default
    field = BACKENDS.get(backend).options.model_fields.get(name) if backend in BACKENDS else None
    return None if field is None else field.default


def _at_default(owner: str, name: str, value: Any) -> bool:
    model = BACKENDS.get(owner).options
    try:
        return getattr(model.model_validate({name: value}), name) == model.model_fields[name].default
    except ValueError:
        return False


@lru_cache(maxsize=None)
def _default_json(backend: str) -> dict[str, Any]:
    """The knobs a config says nothing about: common defaults (backend ``torch``), ``backend``'s option defaults."""
    return {**CommonKnobs().model_dump(mode="json"), **BACKENDS.get(backend).options().model_dump(mode="json")}


KNOB_NAMES: tuple[str, ...] = tuple(dict.fromkeys(
    [*V1_KNOBS, *COMMON, *(k for _, spec in BACKENDS.items() for k in spec.options.model_fields)]))
"""Every knob (common, then each builtin backend's), in results.csv's column order."""
