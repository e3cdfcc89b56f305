"""The knobs of one configuration: every setting that changes how an image is generated."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEDULERS: tuple[str, ...] = (
    "ddim", "pndm", "lms", "euler", "euler_a", "heun",
    "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_sde", "unipc", "lcm",
)
ATTENTION: tuple[str, ...] = ("sdpa", "math", "flash", "efficient", "sliced", "xformers")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
OFFLOAD: tuple[str, ...] = ("none", "model", "sequential")


class Frozen(BaseModel):
    """Base for every config model: strict keys, immutable, finite floats (no NaN or infinity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CompileOptions(Frozen):
    """``compile: {mode: max-autotune, fullgraph: true}``."""

    mode: Optional[Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]] = None
    fullgraph: bool = False


class Knobs(Frozen):
    """Resolved knobs of one config. Defaults are what a config gets when the suite says nothing."""

    steps: int = Field(30, gt=0, le=1000)
    guidance_scale: float = Field(7.5, ge=0)
    width: int = Field(512, gt=0, le=8192)
    height: int = Field(512, gt=0, le=8192)
    batch_size: int = Field(1, gt=0, le=256)
    negative_prompt: Optional[str] = None
    prompt_suffix: str = ""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    tf32: bool = False  # TF32 matmuls on CUDA; cuDNN convolutions keep torch's default (TF32) either way
    attention: Literal["sdpa", "math", "flash", "efficient", "sliced", "xformers"] = "sdpa"
    scheduler: Optional[
        Literal["ddim", "pndm", "lms", "euler", "euler_a", "heun",
                "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_sde", "unipc", "lcm"]
    ] = None  # None keeps the pipeline's own scheduler
    compile: Union[bool, CompileOptions] = False
    channels_last: bool = False
    vae: str = "default"  # default | tiny | a model spec
    vae_slicing: bool = False
    vae_tiling: bool = False
    vae_upcast: bool = False
    offload: Literal["none", "model", "sequential"] = "none"
    cache_text_embeddings: bool = False
    model: Optional[str] = None  # a config may override the suite's model

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"must be a multiple of 8, got {v}")
        return v

    @property
    def compile_options(self) -> Optional[CompileOptions]:
        if self.compile is True:
            return CompileOptions()
        return self.compile or None


KNOB_NAMES: tuple[str, ...] = tuple(Knobs.model_fields)
