"""The PyTorch/diffusers backend's declaration: its knobs, load key and warm-up policy.

The engine is ``t2ibench.backends.torch.engine``; this module stays free of torch imports.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from t2ibench.backends import BACKENDS, BackendSpec
from t2ibench.base import Frozen

ATTENTION: tuple[str, ...] = ("sdpa", "math", "flash", "efficient", "sliced", "xformers")
OFFLOAD: tuple[str, ...] = ("none", "model", "sequential")


class CompileOptions(Frozen):
    """``compile: {mode: max-autotune, fullgraph: true}``."""

    mode: Optional[Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]] = None
    fullgraph: bool = False


class TorchOptions(Frozen):
    """Engine-specific knobs of the torch backend (written flat in a suite, like every knob)."""

    tf32: bool = False  # TF32 matmuls on CUDA; cuDNN convolutions keep torch's default (TF32) either way
    attention: Literal["sdpa", "math", "flash", "efficient", "sliced", "xformers"] = "sdpa"
    compile: Union[bool, CompileOptions] = False
    channels_last: bool = False
    vae_upcast: bool = False
    offload: Literal["none", "model", "sequential"] = "none"


def compile_options(knobs) -> Optional[CompileOptions]:
    """The config's compile settings, or None when it does not compile."""
    if knobs.compile is True:
        return CompileOptions()
    return knobs.compile or None


TORCH = BACKENDS.add("torch", BackendSpec(
    name="torch",
    engine="t2ibench.backends.torch.engine:TorchBackend",
    options=TorchOptions,
    load_fields=("precision", "vae", "offload"),
    compiles=lambda knobs: compile_options(knobs) is not None,
    model_check="t2ibench.backends.torch.loading:check_model_spec",
    description="PyTorch + diffusers pipelines",
))
