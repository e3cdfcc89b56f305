"""The ``openvino`` backend's declaration: its options, load key and what it needs installed.

The pipeline's networks are converted to OpenVINO IR with ``openvino.convert_model`` (cached, see
:mod:`t2ibench.backends.exported`) and compiled with ``openvino.Core().compile_model``; the engine is
:mod:`.engine`. This module stays free of torch and openvino imports.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from t2ibench.backends import BACKENDS, BackendSpec
from t2ibench.base import Frozen, Off

DEVICES: tuple[str, ...] = ("CPU", "GPU", "AUTO")
INFERENCE_PRECISIONS: tuple[str, ...] = ("f32", "bf16", "f16")
WEIGHT_COMPRESSION: tuple[str, ...] = ("int8", "int4")
PACKAGES = {"openvino": "openvino", "nncf": "nncf"}  # import name → distribution (the [openvino] extra)


class OpenVINOOptions(Frozen):
    """Engine knobs of the openvino backend (written flat in a suite, like every knob)."""

    device: Literal[DEVICES] = "CPU"
    inference_precision: Annotated[Optional[Literal[INFERENCE_PRECISIONS]], Off] = None  # None: the plugin's default
    static_shapes: bool = False  # reshape each network to the config's batch and size before compiling
    weight_compression: Annotated[Optional[Literal[WEIGHT_COMPRESSION]], Off] = None  # nncf weight-only
    num_streams: Optional[int] = Field(None, ge=1)
    threads: Optional[int] = Field(None, ge=1)


OPENVINO = BACKENDS.add("openvino", BackendSpec(
    name="openvino",
    engine="t2ibench.backends.openvino.engine:OpenVINOBackend",
    options=OpenVINOOptions,
    load_fields=("precision", "vae", "weight_compression"),
    model_check="t2ibench.backends.torch.loading:check_model_spec",
    preflight="t2ibench.backends.openvino.engine:preflight",
    description="OpenVINO IR of each network, run in place of the torch modules",
    packages=("openvino",), extra="openvino",  # nncf too, for weight_compression (the engine says so)
    test_model="random:tiny-sd",
    test_options=({"inference_precision": "f32"}, {"inference_precision": "bf16"}, {"static_shapes": True},
                  {"num_streams": 2}, {"threads": 1}, {"device": "GPU"}, {"scheduler": "euler_a"},
                  {"cache_text_embeddings": True}),
))
