"""Seeded bootstrap over prompts: resample prompt groups with replacement, 95% percentile CI."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

N_BOOT = 1000      # per-image metrics (vectorised, cheap)
N_BOOT_SET = 100   # FID/KID/CMMD (each resample recomputes the metric)


def group_indices(groups: Sequence[str]) -> list[np.ndarray]:
    """Image indices of each group (prompt), in first-seen order."""
    order: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        order.setdefault(g, []).append(i)
    return [np.array(v) for v in order.values()]


def resamples(groups: Sequence[str], n_boot: int, seed: int) -> list[np.ndarray]:
    """``n_boot`` image-index arrays, each the images of a with-replacement sample of groups."""
    idx = group_indices(groups)
    rng = np.random.default_rng(seed)
    return [np.concatenate([idx[g] for g in rng.integers(0, len(idx), len(idx))]) for _ in range(n_boot)]


def percentile_ci(samples: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def mean_ci(values: np.ndarray, groups: Sequence[str], n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """CI of the mean of per-image ``values`` (one draw = mean of per-prompt means)."""
    per_group = np.array([np.nanmean(values[i]) for i in group_indices(groups)])
    rng = np.random.default_rng(seed)
    draws = per_group[rng.integers(0, len(per_group), (n_boot, len(per_group)))]
    return percentile_ci(np.nanmean(draws, axis=1))


def stat_ci(stat: Callable[[np.ndarray], float], groups: Sequence[str], n_boot: int = N_BOOT_SET,
            seed: int = 0) -> tuple[float, float]:
    """CI of ``stat(image_indices)`` over prompt resamples."""
    if len(set(groups)) < 2:
        return float("nan"), float("nan")
    return percentile_ci([stat(ix) for ix in resamples(groups, n_boot, seed)])
