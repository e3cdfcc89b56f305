"""The ``onnxruntime`` backend's declaration: its options, load key and what it needs installed.

The pipeline's networks are exported with ``torch.onnx.export(..., dynamo=True)`` (cached, see
:mod:`t2ibench.backends.exported`) and run as onnxruntime ``InferenceSession``\\ s; the engine is
:mod:`.engine`. This module stays free of torch and onnxruntime imports.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from t2ibench.backends import BACKENDS, BackendSpec
from t2ibench.base import Frozen

PROVIDERS: dict[str, str] = {  # option value → onnxruntime execution provider
    "cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
}
PROVIDER_NAMES: tuple[str, ...] = tuple(PROVIDERS)
GRAPH_OPTIMIZATION: tuple[str, ...] = ("disable", "basic", "extended", "all")
PACKAGES = {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime"}  # the [onnx] extra


class OnnxRuntimeOptions(Frozen):
    """Engine knobs of the onnxruntime backend (written flat in a suite, like every knob)."""

    provider: Literal[PROVIDER_NAMES] = "cpu"
    graph_optimization: Literal[GRAPH_OPTIMIZATION] = "all"
    intra_op_threads: Optional[int] = Field(None, ge=1)
    io_binding: bool = False  # bind inputs and outputs to the device (provider cuda)
    fp16: bool = False  # the exported graphs converted to float16 (inputs and outputs stay float32)


ONNXRUNTIME = BACKENDS.add("onnxruntime", BackendSpec(
    name="onnxruntime",
    engine="t2ibench.backends.onnxruntime.engine:OnnxRuntimeBackend",
    options=OnnxRuntimeOptions,
    load_fields=("precision", "vae", "fp16"),
    model_check="t2ibench.backends.torch.loading:check_model_spec",
    preflight="t2ibench.backends.onnxruntime.engine:preflight",
    description="ONNX export of each network, run by onnxruntime in place of the torch modules",
    packages=tuple(PACKAGES), extra="onnx",
    test_model="random:tiny-sd",
    test_options=({"graph_optimization": "disable"}, {"intra_op_threads": 1}, {"provider": "cuda"},
                  {"provider": "tensorrt"}, {"io_binding": True}, {"scheduler": "euler_a"},
                  {"cache_text_embeddings": True}),
))
