"""The torch backend's profiler: one call traced with ``torch.profiler``, saved as a gzipped Chrome trace
(Perfetto and chrome://tracing open it), and its operators ranked by self time."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Callable

from t2ibench.backends.engine import ProfiledOp

SHAPES_CHARS = 300  # the shapes text of one operator is cut here


def trace_call(call: Callable[[], object], cuda: bool, path: Path) -> list[ProfiledOp]:
    """Run ``call`` under ``torch.profiler`` (CPU, and CUDA when ``cuda``; with input shapes), write its
    trace at ``path`` (``.json.gz``) and return its operators, the costliest first (on CUDA: by GPU time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        call()
        if cuda:
            torch.cuda.synchronize()  # the call's kernels end inside the trace
    write_trace(prof, path)
    return operators(prof.key_averages(), prof.key_averages(group_by_input_shape=True), "cuda" if cuda else "cpu")


def write_trace(prof, path: Path) -> None:
    """The profile as a Chrome trace, gzipped at ``path`` (the plain JSON is written beside it, then removed)."""
    raw = path.with_name(path.name.removesuffix(".gz"))
    prof.export_chrome_trace(str(raw))
    try:
        with open(raw, "rb") as src, gzip.open(path, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst)
    finally:
        raw.unlink(missing_ok=True)


def operators(by_name, by_shape, device: str) -> list[ProfiledOp]:
    """Operators from ``key_averages()`` (``by_name``), each with the input shapes of its costliest shape group
    (``by_shape``: ``key_averages(group_by_input_shape=True)``), sorted by self time, then by name."""
    def times(event) -> tuple[float, float]:  # (self, total) in µs, on the device ranked by
        if device == "cpu":
            return event.self_cpu_time_total, event.cpu_time_total
        return event.self_device_time_total, event.device_time_total

    shapes: dict[str, tuple[float, str]] = {}
    for event in by_shape:
        own = times(event)[0]
        if event.key not in shapes or own > shapes[event.key][0]:
            shapes[event.key] = (own, str(event.input_shapes or "")[:SHAPES_CHARS])
    ops = [ProfiledOp(name=e.key, self_ms=times(e)[0] / 1000.0, total_ms=times(e)[1] / 1000.0, calls=int(e.count),
                      shapes=shapes.get(e.key, (0.0, ""))[1], device=device) for e in by_name]
    return sorted(ops, key=lambda op: (-op.self_ms, op.name))
