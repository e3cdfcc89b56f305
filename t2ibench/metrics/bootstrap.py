"""Confidence intervals over prompts: a grouped (delete-a-block-of-prompts) jackknife.

Why not the percentile bootstrap: a set metric (FID, KID, CMMD) computed on a with-replacement
resample sees duplicated images, which shrink the set's spread, so every resample is biased.
Deleting prompts never duplicates an image.

**Estimand.** Every interval covers the expected value of the statistic *at this design*: the same
number of prompts and seeds, the same reference size. For FID, CMMD and FD-DINOv2 that is the metric
at this set size (what "FID-10k" means in papers, and what configs of equal size compare on); it is
not the population value, which FID overestimates by a bias that does not shrink like 1/n while n is
about d or less. KID is unbiased, so its estimand is the population MMD². Per-image means (CLIP
score, LPIPS) estimate the population mean. The jackknife's bias correction is therefore not used:
it assumes a bias shrinking like 1/n, and at n ≲ d it moved the interval away from both estimands.

Method (Efron & Stein 1981, Ann. Statist. 9:586; grouped/delete-d form: Shao & Wu 1989, Ann.
Statist. 17:1176). Prompts are the independent units (a prompt's seeds share its content); they form
G = min(#prompts, ``max_blocks``) blocks: single prompts, or a seeded random partition. With θ̂ the
statistic on all images and θ₍g₎ the statistic without block g,

    se² = (G−1)/G · Σ_g (θ₍g₎ − θ̄)²,   CI = θ̂ ± t_{G−1, 0.975} · se.

The reference side is handled by what it is:
- the suite's reference config, made of the same prompts: each block is deleted from both sides at
  once (paired), which keeps the prompts' shared effect out of the variance;
- a folder, an independent sample: blocks are deleted from each side in turn, se² = se²_cand + se²_ref,
  and the t quantile takes Welch–Satterthwaite's degrees of freedom;
- an ``.npz`` of statistics: fixed, only the candidate is resampled. It should come from a set much
  larger than the candidate, or its own sampling noise is missing from the interval.
The jackknife variance errs high (Efron & Stein), so intervals are slightly conservative;
tests/test_metrics_coverage.py measures coverage, also where n ≈ d.
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


def jackknife_se(replicates: Sequence[float]) -> float:
    """The delete-a-group jackknife standard error, sqrt((G−1)/G · Σ (θ₍g₎ − θ̄)²)."""
    rep = np.asarray(replicates, np.float64)
    g = len(rep)
    return math.sqrt((g - 1) / g * float(((rep - rep.mean()) ** 2).sum()))


def t_interval(estimate: float, se: float, df: float, level: float = LEVEL) -> tuple[float, float]:
    """θ̂ ± t_{df} · se as plain floats (bounds go to JSON); NaN when se or the estimate is not finite."""
    from scipy.stats import t

    estimate = float(estimate)
    if not (math.isfinite(estimate) and math.isfinite(se)) or df < 1:
        return NAN_CI
    half = float(t.ppf(0.5 + level / 2, df)) * se
    return estimate - half, estimate + half


def jackknife_interval(estimate: float, replicates: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Jackknife-t interval θ̂ ± t_{G−1} · se from the leave-one-block-out ``replicates``."""
    rep = np.asarray(replicates, np.float64)
    if len(rep) < 2 or not np.isfinite(rep).all():
        return NAN_CI
    return t_interval(estimate, jackknife_se(rep), len(rep) - 1, level)


def _block_ids(groups: Sequence[str], blocks: list[list[str]]) -> np.ndarray:
    block_of = {p: b for b, ps in enumerate(blocks) for p in ps}
    return np.array([block_of[g] for g in groups], dtype=np.intp)


def _deletions(groups: Sequence[str], blocks: list[list[str]]) -> list[np.ndarray]:
    """For each block, the indices of the images outside it."""
    ids = _block_ids(groups, blocks)
    return [np.flatnonzero(ids != b) for b in range(len(blocks))]


def set_ci(stat: Callable[[np.ndarray, np.ndarray | None], float], cand_groups: Sequence[str],
           ref_groups: Sequence[str] | None = None, level: float = LEVEL, seed: int = 0, *,
           paired: bool = True, estimate: float | None = None, max_blocks: int | None = MAX_BLOCKS,
           floor: float | None = None) -> tuple[float, float]:
    """Grouped-jackknife CI of a set metric ``stat(cand_indices, ref_indices)`` (see the module docstring).

    ``cand_groups`` / ``ref_groups`` give each image's prompt (or unit). With ``ref_groups`` and
    ``paired``, each block of prompts is deleted from both sides at once; with ``ref_groups`` and not
    ``paired`` (a folder: an independent sample) each side is resampled in turn and the variances add;
    with None the reference is fixed (an ``.npz``) and ``stat`` gets ``None`` for it. ``estimate`` is
    the reported value when it differs from ``stat`` on all images (KID reports a random-subset average
    of the U-statistic ``stat``): the interval is centred on it. ``floor`` is the statistic's lower
    bound (0 for FID, CMMD): the interval is not extended below it. (NaN, NaN) with fewer than 2 blocks
    on a resampled side, when deleting a block would leave a side with fewer than 2 images, or with a
    non-finite replicate.
    """
    all_c = np.arange(len(cand_groups))
    all_r = None if ref_groups is None else np.arange(len(ref_groups))
    if estimate is None:
        estimate = float(stat(all_c, all_r))
    if ref_groups is not None and paired:
        blocks = prompt_blocks(list(cand_groups) + list(ref_groups), max_blocks, seed)
        pairs = list(zip(_deletions(cand_groups, blocks), _deletions(ref_groups, blocks)))
        sides = [pairs]
    else:
        blocks = prompt_blocks(cand_groups, max_blocks, seed)
        sides = [[(ix, all_r) for ix in _deletions(cand_groups, blocks)]]
        if ref_groups is not None:
            ref_blocks = prompt_blocks(ref_groups, max_blocks, seed + 1)
            sides.append([(all_c, iy) for iy in _deletions(ref_groups, ref_blocks)])
    if any(len(side) < 2 for side in sides):
        return NAN_CI
    if any(len(ix) < 2 or (iy is not None and len(iy) < 2) for side in sides for ix, iy in side):
        return NAN_CI  # a deletion would leave a side with fewer than 2 images
    variances, dfs = [], []
    for side in sides:
        reps = np.array([stat(ix, iy) for ix, iy in side], np.float64)
        if not np.isfinite(reps).all():
            return NAN_CI
        variances.append(jackknife_se(reps) ** 2)
        dfs.append(len(reps) - 1)
    var = sum(variances)
    # Welch–Satterthwaite: the degrees of freedom of a sum of independent variance estimates
    df = var**2 / sum(v**2 / f for v, f in zip(variances, dfs)) if var > 0 else min(dfs)
    lo, hi = t_interval(estimate, math.sqrt(var), df, level)
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
