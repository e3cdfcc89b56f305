"""Latency statistics from the calls table: one definition for results.csv, ``export`` and ``compare``.

The samples of a config are every timed repeat of every call that returned images (warm-up
excluded). p50, p95 and the mean are taken over them, and images/s is the batch size over
the mean call latency.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

LATENCY_FIGURES = ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s")

STATISTIC: dict[str, Callable[..., np.ndarray]] = {
    "latency_ms_p50": lambda x, axis=None: np.median(x, axis=axis),
    "latency_ms_p95": lambda x, axis=None: np.percentile(x, 95, axis=axis),
    "latency_ms_mean": lambda x, axis=None: np.mean(x, axis=axis),
    "images_per_s": lambda x, axis=None: 1.0 / np.mean(x, axis=axis),  # × 1000 × batch size: see `scale`
}


def samples(calls: list[dict]) -> list[float]:
    """Every timed repeat (ms) of the calls that returned images."""
    out: list[float] = []
    for c in calls:
        if c["status"] == "ok" and c["latency_ms"] is not None:
            out += [float(x) for x in (c["samples"] or [c["latency_ms"]])]
    return out


def scale(figure: str, batch_size: int) -> float:
    """Factor from ``STATISTIC[figure]`` of samples in ms to the figure's unit."""
    return 1000.0 * batch_size if figure == "images_per_s" else 1.0


def figures(sample_ms: list[float], batch_size: int) -> dict[str, float]:
    """The latency figures of results.csv; NaN without samples."""
    if not sample_ms:
        return {f: math.nan for f in LATENCY_FIGURES}
    x = np.asarray(sample_ms, np.float64)
    return {f: float(STATISTIC[f](x)) * scale(f, batch_size) for f in LATENCY_FIGURES}


def phase_means(calls: list[dict]) -> dict[str, float]:
    """Mean encode/denoise/decode time per ok call, and the mean step time."""
    ok = [c for c in calls if c["status"] == "ok" and c["latency_ms"] is not None]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else math.nan

    return {
        "encode_ms_mean": mean([c["encode_ms"] for c in ok]),
        "denoise_ms_mean": mean([c["denoise_ms"] for c in ok]),
        "decode_ms_mean": mean([c["decode_ms"] for c in ok]),
        "step_ms_mean": mean([x for c in ok for x in c["step_ms"]]),
    }
