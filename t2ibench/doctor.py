"""``t2ibench doctor``: what this machine can run, and which metric weights are found (no downloads)."""

from __future__ import annotations

import importlib.util
import os
from typing import Iterator

from t2ibench.errors import UserError


def _attention_backends(torch) -> list[str]:
    found = ["sdpa", "math", "sliced"]
    if torch.cuda.is_available():
        found += [b for b, flag in (("flash", torch.backends.cuda.flash_sdp_enabled()),
                                    ("efficient", torch.backends.cuda.mem_efficient_sdp_enabled())) if flag]
    if importlib.util.find_spec("xformers") is not None:
        found.append("xformers")
    return found


# optional packages a knob or an executor needs: (import name, distribution, the extra that brings it)
OPTIONAL_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("torchao", "torchao", "quant"), ("optimum.quanto", "optimum-quanto", "quant"),
    ("bitsandbytes", "bitsandbytes", "quant"), ("gguf", "gguf", "quant"), ("DeepCache", "DeepCache", "cache"),
    ("peft", "peft", ""), ("ray", "ray", "ray"), ("xformers", "xformers", "xformers"),
    ("sageattention", "sageattention", ""), ("flash_attn", "flash-attn", ""),
)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package (optimum)
        return False


def _optional_packages() -> Iterator[str]:
    """Each optional package: its version, or how to install it (found without importing it)."""
    from importlib import metadata

    for module, dist, extra in OPTIONAL_PACKAGES:
        if _installed(module):
            try:
                yield f"  {dist:16} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                yield f"  {dist:16} found"
        else:
            how = f"pip install 't2ibench[{extra}]'" if extra else f"pip install {dist}"
            yield f"  {dist:16} not installed ({how})"


def _weights() -> Iterator[str]:
    """The networks every registered metric needs with its default options: found, or where to put them."""
    from t2ibench.metrics.registry import METRICS

    checks = {}
    for _, spec in METRICS.items():
        for check in spec.networks(spec.options()):
            checks.setdefault(check.label, check.find)
    saved = os.environ.get("T2IBENCH_OFFLINE")
    os.environ["T2IBENCH_OFFLINE"] = "1"  # look, never download
    try:
        for name, find in checks.items():
            try:
                yield f"  {name:26} found: {find()}"
            except UserError as e:
                yield f"  {name:26} missing: {e}"
    finally:
        if saved is None:
            os.environ.pop("T2IBENCH_OFFLINE", None)
        else:
            os.environ["T2IBENCH_OFFLINE"] = saved


def _openvino_devices() -> str:
    import openvino as ov

    return f"OpenVINO {ov.__version__}, devices: {', '.join(ov.Core().available_devices) or 'none'}"


def _onnxruntime_providers() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}, providers: {', '.join(ort.get_available_providers())}"


_ENGINE_TARGETS = {"openvino": _openvino_devices, "onnxruntime": _onnxruntime_providers}


def cuda_line(available: bool, built_with) -> str:
    """What doctor says of CUDA: whether a device is usable, and the CUDA version torch was built with."""
    build = f"torch built with CUDA {built_with}" if built_with else "a CPU-only torch build"
    return f"available ({build})" if available else f"not available: no CUDA device ({build})"


def report() -> Iterator[str]:
    import torch

    from t2ibench.harness.environment import collect_environment

    cuda = torch.cuda.is_available()
    env = collect_environment("cuda" if cuda else "cpu")
    # torch.version.cuda is the CUDA its build targets, not a device found here
    env["cuda"] = cuda_line(cuda, torch.version.cuda)
    yield "environment:"
    for key, value in env.items():
        if value is not None:
            yield f"  {key:20} {value}"
    yield f"attention backends: {', '.join(_attention_backends(torch))}"
    from t2ibench.backends.torch.attention import dispatcher_backends

    usable = dispatcher_backends(torch.cuda.is_available())
    yield f"dispatcher attention backends: {', '.join(k for k, v in usable.items() if v == 'available') or 'none'}"
    for knob, why in usable.items():
        if why != "available":
            yield f"  {knob:12} {why}"
    yield f"torchsde (dpmpp_sde): {'yes' if importlib.util.find_spec('torchsde') else 'no (pip install torchsde)'}"
    from t2ibench.backends import BACKENDS
    from t2ibench.executors import EXECUTORS

    yield "backends:"
    for name, spec in BACKENDS.items():
        missing = spec.missing()
        state = f"missing {', '.join(missing)} ({spec.install_hint()})" if missing else "available"
        yield f"  {name:14} {state}" + (f"  — {spec.description}" if spec.description and not missing else "")
        if not missing and name in _ENGINE_TARGETS:
            yield f"  {'':14} {_ENGINE_TARGETS[name]()}"
    from t2ibench.backends.torch.compile_backends import backend_problem
    from t2ibench.backends.torch.options import COMPILE_BACKENDS

    yield "compile backends (compile: {backend: ...}):"
    for backend in COMPILE_BACKENDS:
        state = backend_problem(backend, cuda) or ("built in" if backend == "inductor" else "installed")
        yield f"  {backend:14} {state}"
    yield f"executors: {', '.join(EXECUTORS.names())}"
    yield "optional packages:"
    yield from _optional_packages()
    yield f"T2IBENCH_WEIGHTS: {os.environ.get('T2IBENCH_WEIGHTS', '(unset)')}"
    yield "metric weights:"
    yield from _weights()
