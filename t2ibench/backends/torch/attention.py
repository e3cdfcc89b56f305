"""diffusers' attention dispatcher backends (``attention: native | flash_attn | flash3 | sage | flex | cudnn``).

The backend is set on the denoiser's attention processors (``set_attention_backend``) and their
previous backends are put back for the next config. Only processors that call diffusers'
``dispatch_attention_fn`` use it (Flux's do; the UNet's and SD3's call SDPA directly): on those models a
dispatcher backend is a skip with that reason. A missing package or a CUDA-only kernel on CPU is a skip
with diffusers' own reason, never a silent fallback. The backend really called is *observed* on the
config's first call: the dispatcher's registered backend functions stay wrapped while the config runs (so
a compiled graph's guards on them hold), and the first call's record is checked and kept.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Callable

from t2ibench.backends.torch.options import DISPATCHER_ATTENTION
from t2ibench.errors import SkipConfig

CUDA_ONLY = ("flash_attn", "flash3", "sage", "cudnn")


def _attention_modules(denoiser) -> list:
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    return [m for m in denoiser.modules() if isinstance(m, (Attention, AttentionModuleMixin))
            and getattr(m, "processor", None) is not None]


def _uses_dispatcher(processor) -> bool | None:
    try:
        return "dispatch_attention_fn" in inspect.getsource(type(processor))
    except (OSError, TypeError):
        return None  # unknown: the first call's observation decides


def set_dispatcher_backend(knob: str, denoiser, cuda: bool) -> Callable[[], None]:
    """Set the dispatcher backend for ``knob`` on the denoiser; returns the undo (raises SkipConfig)."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    backend = AttentionBackendName(DISPATCHER_ATTENTION[knob])
    name = type(denoiser).__name__
    modules = _attention_modules(denoiser)
    processors = {type(m.processor).__name__: m.processor for m in modules}
    if not processors or not any(_uses_dispatcher(p) is not False for p in processors.values()):
        raise SkipConfig(f"attention '{knob}' is a diffusers dispatcher backend, and {name}'s attention processors "
                         f"({', '.join(sorted(processors)) or 'none'}) do not call the dispatcher")
    try:
        _check_attention_backend_requirements(backend)
    except RuntimeError as e:
        raise SkipConfig(f"attention '{knob}': {str(e).splitlines()[0]}") from e
    if knob in CUDA_ONLY and not cuda:
        raise SkipConfig(f"attention '{knob}' needs a CUDA device")
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry
    from diffusers.utils import logging as diffusers_logging

    previous = [(m.processor, m.processor._attention_backend) for m in modules
                if hasattr(m.processor, "_attention_backend")]
    active = _AttentionBackendRegistry._active_backend  # set_attention_backend also sets this global default

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "attention backends are an experimental feature": once per config
    try:
        denoiser.set_attention_backend(backend.value)
    finally:
        diffusers_logging.set_verbosity(level)

    def undo() -> None:
        for processor, value in previous:
            processor._attention_backend = value
        _AttentionBackendRegistry.set_active_backend(active)

    return undo


@contextlib.contextmanager
def observe_dispatch(seen: dict):
    """Wrap every registered dispatcher backend function for the duration: ``seen["calls"]`` gets the
    count of eager calls per backend name (the function really called, after the dispatcher's own choice),
    and ``seen["traced"]`` the backends that torch.compile traced into a graph (recorded once, at trace
    time, so that a compiled graph holds no counter and no guard on one)."""
    import torch
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    backends = _AttentionBackendRegistry._backends
    originals = dict(backends)
    calls, traced = seen.setdefault("calls", {}), seen.setdefault("traced", set())

    def wrapper(name, fn):
        @torch.compiler.assume_constant_result
        def trace_time() -> bool:  # run by dynamo while tracing, not at each call
            traced.add(name)
            return True

        def counted(**kwargs):
            if torch.compiler.is_compiling():
                trace_time()
            else:
                calls[name] = calls.get(name, 0) + 1
            return fn(**kwargs)
        return counted

    for key, fn in originals.items():
        backends[key] = wrapper(getattr(key, "value", str(key)), fn)
    try:
        yield seen
    finally:
        backends.clear()
        backends.update(originals)


def check_observed(knob: str, seen: dict, denoiser_name: str) -> dict:
    """What the first call showed; SkipConfig when the dispatcher ran no call or another backend."""
    expected = DISPATCHER_ATTENTION[knob]
    calls, traced = dict(seen.get("calls", {})), set(seen.get("traced", ()))
    used = set(calls) | traced
    if not used:
        raise SkipConfig(f"attention '{knob}': no attention call of {denoiser_name} went through diffusers' dispatcher")
    others = sorted(used - {expected})
    if others:
        raise SkipConfig(f"attention '{knob}': the dispatcher also ran {', '.join(others)} (expected only '{expected}')")
    out = {"knob": knob, "backend": expected, "calls_per_image_call": calls.get(expected, 0)}
    if traced:
        out["compiled_into_graph"] = True
    return out


def dispatcher_backends(cuda: bool) -> dict[str, str]:
    """Each dispatcher knob → "available" or why not (diffusers' own requirement check), for ``doctor``."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    out = {}
    for knob, value in DISPATCHER_ATTENTION.items():
        try:
            _check_attention_backend_requirements(AttentionBackendName(value))
        except RuntimeError as e:
            out[knob] = str(e).splitlines()[0]
            continue
        out[knob] = "needs a CUDA device" if knob in CUDA_ONLY and not cuda else "available"
    return out
