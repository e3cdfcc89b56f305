"""Latency statistics from the calls table: one definition for results.csv, ``export`` and ``compare``.

The samples of a config are every timed repeat of every call that returned images (warm-up
excluded). p50, p95 and the mean are taken over them, and images/s is the batch size over
the mean call latency.

Noise, said the same way in ``run``'s summary, the reports, the recommendation and ``compare``:
- ``median_ci``: a distribution-free 95% CI of p50 (order statistics of the samples);
- ``instability``: a config's timings are unstable when p95/p50 > ``UNSTABLE_TAIL`` or the spread
  of its samples (coefficient of variation) > ``UNSTABLE_CV``, with at least
  ``MIN_STABILITY_SAMPLES`` samples; on a quiet machine both stay far below (a few % on a GPU).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

LATENCY_FIGURES = ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s")
UNSTABLE_TAIL = 1.5  # p95 / p50
UNSTABLE_CV = 0.2  # standard deviation / mean of the samples
MIN_STABILITY_SAMPLES = 5
P50_CI_LEVEL = 0.95

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
    """Mean encode/denoise/decode time per ok call, and the mean step time (a served call has no phases)."""
    ok = [c for c in calls if c["status"] == "ok" and c["latency_ms"] is not None]

    def mean(values: list[float | None]) -> float:
        known = [v for v in values if v is not None]
        return float(np.mean(known)) if known else math.nan

    return {
        "encode_ms_mean": mean([c["encode_ms"] for c in ok]),
        "denoise_ms_mean": mean([c["denoise_ms"] for c in ok]),
        "decode_ms_mean": mean([c["decode_ms"] for c in ok]),
        "step_ms_mean": mean([x for c in ok for x in c["step_ms"]]),
    }


def median_ci(sample_ms: list[float], level: float = P50_CI_LEVEL) -> tuple[float, float]:
    """Distribution-free CI of the median: the order statistics ``(x_(k), x_(n-k+1))`` with the largest
    ``k`` such that ``P(Binomial(n, 1/2) < k) <= (1 - level) / 2``; NaNs when n is too small (< 6 at 95%)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(sample_ms, np.float64))
    n = len(x)
    alpha = (1 - level) / 2
    k = 0  # x_(k) is the lower bound (1-indexed); 0: no k reaches the level
    while k + 1 <= n // 2 and binom.cdf(k, n, 0.5) <= alpha:
        k += 1
    if k == 0:
        return math.nan, math.nan
    return float(x[k - 1]), float(x[n - k])


def instability(sample_ms: list[float]) -> str:
    """Why a config's timings look unstable, e.g. ``p95/p50 2.64, CV 31%`` (the figures beyond their
    thresholds); '' when none is, or when there are fewer than ``MIN_STABILITY_SAMPLES`` samples to tell."""
    x = np.asarray(sample_ms, np.float64)
    if len(x) < MIN_STABILITY_SAMPLES or not np.all(np.isfinite(x)) or x.mean() <= 0:
        return ""
    reasons = []
    tail = float(np.percentile(x, 95) / np.median(x)) if np.median(x) > 0 else math.inf
    if tail > UNSTABLE_TAIL:
        reasons.append(f"p95/p50 {tail:.2f}")
    cv = float(np.std(x, ddof=1) / np.mean(x))
    if cv > UNSTABLE_CV:
        reasons.append(f"CV {cv:.0%}")
    return ", ".join(reasons)


def stability(sample_ms: list[float]) -> dict:
    """The noise columns of a results row: p50's 95% CI, the samples' CV and ``latency_unstable``."""
    lo, hi = median_ci(sample_ms)
    x = np.asarray(sample_ms, np.float64)
    cv = float(np.std(x, ddof=1) / np.mean(x)) if len(x) >= 2 and np.mean(x) > 0 else math.nan
    return {"latency_ms_p50_ci_low": lo, "latency_ms_p50_ci_high": hi, "latency_cv": cv,
            "latency_unstable": instability(sample_ms)}


def unstable_note(unstable: dict[str, str], where: str = "", limit: int = 4) -> str:
    """One sentence naming the unstable configs (config → ``instability``), '' when there are none."""
    if not unstable:
        return ""
    items = [f"{name} ({why})" for name, why in list(unstable.items())[:limit]]
    more = f" and {len(unstable) - limit} more" if len(unstable) > limit else ""
    return (f"unstable timings{' in ' + where if where else ''} (p95/p50 > {UNSTABLE_TAIL:g} or spread CV > "
            f"{UNSTABLE_CV:.0%}): {', '.join(items)}{more}; is the machine busy? Latency differences may be noise: "
            "rerun on a quiet machine or with more timing.repeats")
