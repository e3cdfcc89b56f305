"""The PyTorch/diffusers backend's declaration: its knobs, load key and warm-up policy.

The knobs are :mod:`.options`; the engine is ``t2ibench.backends.torch.engine``. This module
stays free of torch imports.
"""

from __future__ import annotations

from t2ibench.backends import BACKENDS, BackendSpec
from t2ibench.backends.torch.options import (  # noqa: F401  (the backend's public names)
    ATTENTION, CACHE_METHODS, DISPATCHER_ATTENTION, OFFLOAD, QUANTIZE_TYPES, CompileOptions, GroupOffload,
    LayerwiseCasting, LoraAdapter, QuantizeOptions, TorchOptions, compile_options,
)

TORCH = BACKENDS.add("torch", BackendSpec(
    name="torch",
    engine="t2ibench.backends.torch.engine:TorchBackend",
    options=TorchOptions,
    load_fields=("precision", "vae", "offload", "quantize", "layerwise_casting", "base"),
    compiles=lambda knobs: compile_options(knobs.options) is not None,
    model_check="t2ibench.backends.torch.loading:check_model_spec",
    preflight="t2ibench.backends.torch.preflight:preflight",
    description="PyTorch + diffusers pipelines",
    test_model="random:tiny-sd",
    # every runtime knob; those that skip here (CUDA, a UNet) still check that a partial application is undone.
    # Not here: a whole-denoiser inductor compile (minutes on a CPU; its undo, the eager denoiser back, is
    # tested on Flux with regional compile in tests/test_knobs_cache_lora.py)
    test_options=(
        {"attention": "math"}, {"attention": "sliced"}, {"attention": "native"}, {"attention": "flash"},
        {"channels_last": True}, {"vae_slicing": True}, {"vae_tiling": True}, {"vae_upcast": True},
        {"cache_text_embeddings": True}, {"scheduler": "euler_a"}, {"cache": {"method": "deepcache"}},
        {"lora": [{"source": "random:a"}]}, {"lora": [{"source": "random:a", "fuse": True, "scale": 0.5}]},
        {"tf32": True}, {"compile": {"regional": True}}, {"compile": {"backend": "openvino"}},
        {"compile": {"backend": "tensorrt"}},
    ),
))
