"""Confidence intervals over prompts: a grouped (delete-a-block-of-prompts) jackknife.

Why not the percentile bootstrap it replaces: a set metric (FID, KID, CMMD) computed on a
with-replacement resample sees duplicated images, which shrink the set's spread, so every
resample is biased and the interval can lie wholly above its own estimate. Deleting prompts never
duplicates an image; nor does m-out-of-n subsampling, but its subsets carry a larger O(1/m) bias
and need the metric's convergence rate for the rescaling.

Method (Efron & Stein 1981, "The jackknife estimate of variance", Ann. Statist. 9:586; Efron 1982,
"The Jackknife, the Bootstrap and Other Resampling Plans", SIAM, ch. 2-3; grouped/delete-d form:
Shao & Wu 1989, Ann. Statist. 17:1176). Prompts are the independent units (a prompt's seeds share
its content); they form G = min(#prompts, ``max_blocks``) blocks: single prompts, or a seeded
random partition when there are more prompts than blocks. With θ̂ the statistic on all images
and θ₍g₎ the statistic without block g (deleted JOINTLY from candidate and reference when the
reference is made of the same prompts):

    se² = (G−1)/G · Σ_g (θ₍g₎ − θ̄)²,   bias = (G−1)(θ̄ − θ̂),   CI = θ̂ − bias ± t_{G−1, 0.975} · se.

The jackknife variance is consistent for smooth functions of means such as FID (means and
covariances) and for U/V-statistics such as the MMD² of KID and CMMD (Arvesen 1969, Ann. Math.
Statist. 40:2076); the bias term removes their O(1/G) bias (a V-statistic's diagonal, pairs of
images of one prompt, FID's ‖mean difference‖²), without which a biased FID's interval would miss
its population value. Student-t quantiles with G−1 degrees of freedom suit few clusters (Cameron &
Miller 2015, J. Human Resources 50:317). Every printed CI must contain its point estimate, which a
bias-corrected interval may not (FID on few images): the interval then reaches to the estimate on
that side and its other side is set so that the nominal coverage stays 95% (``jackknife_interval``).
The jackknife variance errs high (Efron & Stein), most for FID against fixed statistics near its
noise floor: those intervals are conservative (tests/test_metrics_coverage.py measures coverage).
Per-image metrics use the same jackknife over prompts for their mean over images.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

MAX_BLOCKS = 50  # set metrics recompute the statistic once per block (an FID trace term each)
LEVEL = 0.95

NAN_CI = (math.nan, math.nan)


def prompt_blocks(prompts: Sequence[str], max_blocks: int | None = MAX_BLOCKS, seed: int = 0) -> list[list[str]]:
    """The distinct ``prompts`` split into min(#prompts, ``max_blocks``) blocks (None: one per prompt).

    With more prompts than blocks, a seeded random permutation is dealt round-robin, so block
    sizes differ by at most one and the partition depends only on the prompts and ``seed``.
    """
    keys = list(dict.fromkeys(prompts))
    if max_blocks is None or len(keys) <= max_blocks:
        return [[k] for k in keys]
    order = np.random.default_rng(seed).permutation(len(keys))
    return [[keys[i] for i in order[b::max_blocks]] for b in range(max_blocks)]


def jackknife_interval(estimate: float, replicates: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Bias-corrected jackknife-t interval from the leave-one-block-out ``replicates``, holding ``estimate``.

    With centre c = θ̂ − bias and T = (c − θ)/se ~ t_{G−1}, the interval is c ± q·se (q the two-sided
    quantile) when that holds θ̂. Otherwise (θ̂ is more than q·se from c: a strongly biased estimate)
    it runs from θ̂ to the other side's bound c ∓ q′·se, with q′ chosen so that the interval's
    coverage of T stays ``level``: the shortest such interval that contains θ̂.
    """
    from scipy.stats import t

    rep, estimate = np.asarray(replicates, np.float64), float(estimate)  # plain floats: bounds go to JSON
    g = len(rep)
    if g < 2 or not np.isfinite(rep).all() or not math.isfinite(estimate):
        return NAN_CI
    mean = float(rep.mean())
    se = math.sqrt((g - 1) / g * float(((rep - mean) ** 2).sum()))
    centre = estimate - (g - 1) * (mean - estimate)
    q = float(t.ppf(0.5 + level / 2, g - 1))
    if se == 0 or abs(estimate - centre) <= q * se:
        return min(centre - q * se, estimate), max(centre + q * se, estimate)
    far = abs(estimate - centre) / se  # T is beyond −far (or +far) with probability t.cdf(−far) < (1−level)/2
    near = float(t.ppf(level + t.cdf(-far, g - 1), g - 1)) * se
    return (centre - near, estimate) if estimate > centre else (estimate, centre + near)


def _block_ids(groups: Sequence[str], blocks: list[list[str]]) -> np.ndarray:
    block_of = {p: b for b, ps in enumerate(blocks) for p in ps}
    return np.array([block_of[g] for g in groups], dtype=np.intp)


def set_ci(stat: Callable[[np.ndarray, np.ndarray | None], float], cand_groups: Sequence[str],
           ref_groups: Sequence[str] | None = None, level: float = LEVEL, seed: int = 0, *,
           estimate: float | None = None, max_blocks: int | None = MAX_BLOCKS,
           floor: float | None = None) -> tuple[float, float]:
    """Grouped-jackknife CI of a set metric ``stat(cand_indices, ref_indices)``.

    ``cand_groups`` / ``ref_groups`` give each image's prompt id. With ``ref_groups``, each block
    of prompts is deleted from both sides at once (paired); with None the reference is fixed (a
    folder or statistics file not made of the suite's prompts) and ``stat`` gets ``None`` for it.
    ``estimate`` is the reported value when it differs from ``stat`` on all images by a constant
    (KID reports a random-subset average of the U-statistic ``stat``): the interval is computed for
    ``stat`` and moved by that difference, so it contains ``estimate``. ``floor`` is the
    statistic's lower bound (0 for FID, CMMD): the interval is not extended below it, unless the
    estimate itself lies below. (NaN, NaN) with fewer than 2 prompts, when deleting a block would leave
    a side with fewer than 2 images, or with a non-finite replicate.
    """
    all_c = np.arange(len(cand_groups))
    all_r = None if ref_groups is None else np.arange(len(ref_groups))
    full = float(stat(all_c, all_r))
    estimate = full if estimate is None else float(estimate)
    prompts = list(cand_groups) + list(ref_groups or [])
    blocks = prompt_blocks(prompts, max_blocks, seed)
    if len(blocks) < 2:
        return NAN_CI
    ids_c = _block_ids(cand_groups, blocks)
    ids_r = None if ref_groups is None else _block_ids(ref_groups, blocks)
    kept = [(np.flatnonzero(ids_c != b), None if ids_r is None else np.flatnonzero(ids_r != b))
            for b in range(len(blocks))]
    if any(len(ix) < 2 or (iy is not None and len(iy) < 2) for ix, iy in kept):
        return NAN_CI  # a deletion would leave a side with fewer than 2 images
    reps = [stat(ix, iy) for ix, iy in kept]
    lo, hi = jackknife_interval(full, reps, level)
    lo, hi = min(lo + estimate - full, estimate), max(hi + estimate - full, estimate)  # exact despite rounding
    if floor is not None and math.isfinite(lo):
        lo = max(lo, min(floor, float(estimate)))
    return lo, hi


def mean_ci(values: np.ndarray, groups: Sequence[str], level: float = LEVEL, seed: int = 0, *,
            max_blocks: int | None = None) -> tuple[float, float]:
    """Jackknife CI over prompts of the mean over images (non-finite values skipped), vectorised.

    Deleting a prompt removes all its images, so each replicate is the mean over the images of the
    other prompts: the same statistic as the point estimate, whatever the prompts' image counts.
    """
    v = np.asarray(values, np.float64)
    keep = np.isfinite(v)
    v, groups = v[keep], [g for g, k in zip(groups, keep) if k]
    blocks = prompt_blocks(groups, max_blocks, seed)
    if len(blocks) < 2:
        return NAN_CI
    ids = _block_ids(groups, blocks)
    sums = np.bincount(ids, v, len(blocks))
    counts = np.bincount(ids, minlength=len(blocks)).astype(np.float64)
    reps = (sums.sum() - sums) / (counts.sum() - counts)
    return jackknife_interval(float(v.mean()), reps, level)
