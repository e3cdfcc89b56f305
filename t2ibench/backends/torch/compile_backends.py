"""torch.compile's backends besides inductor (``compile: {backend: openvino | tensorrt}``).

- ``openvino``: OpenVINO's torch.compile backend (registered by ``import openvino.torch``), on CPU.
  With torch 2.14.1 and openvino 2026.4.1 it fails on diffusers' UNets while dynamo builds its guards
  (an ``IndexError`` in ``ShapeEnvSource`` guard creation); a config that meets such a failure in its
  first call is skipped, and the reason names the error and both versions (``compile_failure``).
- ``tensorrt``: torch-tensorrt, matched to the torch pin, CUDA only: a skip with its reason elsewhere.
"""

from __future__ import annotations

import importlib.util

from t2ibench.errors import SkipConfig

PACKAGES = {"openvino": ("openvino", "pip install 't2ibench[openvino]'"),
            "tensorrt": ("torch_tensorrt", "pip install torch-tensorrt (the release built for your torch)")}


def backend_problem(backend: str, cuda: bool | None) -> str | None:
    """Why ``backend`` cannot compile here (None when it may; ``cuda`` None: the device is not known yet)."""
    if backend == "inductor":
        return None
    if backend == "tensorrt" and cuda is False:
        return "compile backend 'tensorrt' (torch-tensorrt) needs a CUDA device"
    module, install = PACKAGES[backend]
    if importlib.util.find_spec(module) is None:
        return f"compile backend '{backend}' needs the {module} package ({install})"
    return None


def check_backend(backend: str, cuda: bool) -> None:
    """Raise SkipConfig when ``backend`` cannot compile here; otherwise register it with torch.compile."""
    problem = backend_problem(backend, cuda)
    if problem:
        raise SkipConfig(problem)
    importlib.import_module("openvino.torch" if backend == "openvino" else "torch_tensorrt")


def versions(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    dist = {"openvino": "openvino", "tensorrt": "torch-tensorrt"}.get(backend)
    try:
        other = f" and {dist} {version(dist)}" if dist else ""
    except PackageNotFoundError:
        other = ""
    return f"torch {torch.__version__}{other}"


def compile_failure(backend: str, error: BaseException) -> SkipConfig:
    """The skip of a config whose compiled call failed: the error and the versions it failed with."""
    first = (str(error).splitlines() or [""])[0][:200]
    return SkipConfig(f"compile backend '{backend}' failed with {versions(backend)}: "
                      f"{type(error).__name__}: {first}".rstrip(": "))
