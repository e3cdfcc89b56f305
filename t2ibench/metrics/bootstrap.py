"""Confidence intervals over prompts: a grouped (delete-a-block-of-prompts) jackknife.

Why not the percentile bootstrap: a set metric (FID, KID, CMMD) computed on a with-replacement
resample sees duplicated images, which shrink the set's spread, so every resample is biased.
Deleting prompts never duplicates an image.

**Estimand.** Every interval covers the expected value of the statistic *at this design*: the same
number of prompts and seeds, the same reference. For FID, CMMD and FD-DINOv2 that is the metric at
this set size (what "FID-10k" means in papers, and what configs of equal size compare on); it is not
the population value, which FID overestimates by a bias that does not shrink like 1/n while n is about
d or less. KID's estimator is unbiased for the population MMD² only when every image is independent;
a suite's images share prompts (a prompt's seeds, and the reference config's image of that prompt),
so KID too estimates its expected value at this design. Per-image means (CLIP score, LPIPS) estimate
the population mean. The jackknife's bias correction is therefore not used: it assumes a bias
shrinking like 1/n, and at n ≲ d it moved the interval away from every estimand.

Method (Efron & Stein 1981, Ann. Statist. 9:586; grouped/delete-d form: Shao & Wu 1989, Ann.
Statist. 17:1176). Prompts are the independent units (a prompt's seeds share its content); they form
G = min(#prompts, ``max_blocks``) blocks: single prompts, or a seeded random partition. With θ̂ the
statistic on all images and θ₍g₎ the statistic without block g,

    se² = (G−1)/G · Σ_g (θ₍g₎ − θ̄)²,   CI = θ̂ ± t_{G−1, 0.975} · se.

The reference side is handled by what it is:
- the suite's reference config, made of the same prompts: each block is deleted from both sides at
  once (paired), which keeps the prompts' shared effect out of the variance;
- a folder, an independent sample: its blocks are dealt at random to the candidate's blocks, and each
  pair of blocks is deleted together (iid units), so its sampling noise is in the interval;
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
PAIRS_PER_UNIT = 2  # random pairs of deleted blocks per block, for the second-order correction

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


def _units(groups: Sequence[str], blocks: list[list[str]]) -> list[np.ndarray]:
    """For each block, the indices of its images."""
    ids = _block_ids(groups, blocks)
    return [np.flatnonzero(ids == b) for b in range(len(blocks))]


def _keep(n: int, out: list[np.ndarray]) -> np.ndarray:
    mask = np.ones(n, bool)
    for o in out:
        mask[o] = False
    return np.flatnonzero(mask)


def second_order_factor(g: int) -> float:
    """E[v_J] − Var θ̂ for a statistic Σα_u + Σ_{u<w} β_uw of G blocks, as a multiple of C(G, 2)·Var β.

    The delete-one jackknife v_J = (G−1)/G·Σ(θ₍u₎ − θ̄)² counts each pair's interaction once for each of
    its two blocks: E[v_J] − Var θ̂ = (G² − 6G + 4)/G² · C(G, 2)·Var β, which tends to 1 for large G.
    """
    return max(0.0, (g * g - 6 * g + 4) / (g * g))


def set_ci(stat: Callable[[np.ndarray, np.ndarray | None], float], cand_groups: Sequence[str],
           ref_groups: Sequence[str] | None = None, level: float = LEVEL, seed: int = 0, *,
           paired: bool = True, estimate: float | None = None, max_blocks: int | None = MAX_BLOCKS,
           floor: float | None = None, pairwise: bool = False,
           pairs_per_unit: int = PAIRS_PER_UNIT) -> tuple[float, float]:
    """Grouped-jackknife CI of a set metric ``stat(cand_indices, ref_indices)`` (see the module docstring).

    ``cand_groups`` / ``ref_groups`` give each image's prompt (or unit). With ``ref_groups`` and
    ``paired``, each block of prompts is deleted from both sides at once; with ``ref_groups`` and not
    ``paired`` (a folder: an independent sample) its units form as many blocks as the candidate's, paired
    with them, so that each deletion removes one block of each side (iid pairs of blocks); with None the
    reference is fixed (an ``.npz``) and ``stat`` gets ``None`` for it. ``estimate`` is the reported value
    when it differs from ``stat`` on all images (KID reports a random-subset average of the U-statistic ``stat``): the
    interval is centred on it. ``floor`` is the statistic's lower bound (0 for FID, CMMD): the interval
    is not extended below it. (NaN, NaN) with fewer than 2 blocks on a resampled side, when deleting
    blocks would leave a side with fewer than 2 images, or with a non-finite replicate.

    Set metrics are not smooth means: their interactions between blocks, large while n ≈ d, make the
    plain jackknife variance err high. In the Hoeffding (ANOVA) expansion of θ̂ over the G blocks,
    Var θ̂ = Σ_k V_k, while E[v_J] counts the k-th order part k times (Efron & Stein 1981). The pair
    interactions β̂_uw = θ̂ − θ₍u₎ − θ₍w₎ + θ₍uw₎, whose variance (centred: the deterministic change of a
    biased statistic with set size is no interaction) over ``pairs_per_unit`` × G random pairs estimates
    Ê = Σ_k C(k, 2) V_k, give v = v_J − c·Ê with k − c·C(k, 2) copies of V_k. Any statistic takes
    c = 1/2, the largest correction that counts no order up to 4 less than once; a ``pairwise`` one
    (CMMD: a bounded kernel's V-statistic, no term above order 2 but its normalisation) takes c = 1,
    exact for order 2. KID's cubic kernel is unbounded: with c = 1 its intervals covered 92–96%
    where CMMD's covered 95–96%, so it keeps c = 1/2 (94–98%). The correction never takes off more
    than half of v_J. Without it, intervals cover 97–99% (tests/test_metrics_coverage.py).
    """
    n_c = len(cand_groups)
    n_r = None if ref_groups is None else len(ref_groups)
    if ref_groups is not None and paired:
        blocks = prompt_blocks(list(cand_groups) + list(ref_groups), max_blocks, seed)
        units = list(zip(_units(cand_groups, blocks), _units(ref_groups, blocks)))
    else:  # an independent reference: as many blocks of its units as the candidate has, paired: iid pairs of blocks
        g = len(set(cand_groups)) if ref_groups is None else min(len(set(cand_groups)), len(set(ref_groups)))
        blocks = prompt_blocks(cand_groups, g if max_blocks is None else min(g, max_blocks), seed)
        none = [np.zeros(0, np.intp)] * len(blocks)
        ref_units = none if ref_groups is None else _units(ref_groups, prompt_blocks(ref_groups, len(blocks), seed + 1))
        units = list(zip(_units(cand_groups, blocks), ref_units))

    def without(*us: int) -> float:
        ix = _keep(n_c, [units[u][0] for u in us])
        iy = None if n_r is None else _keep(n_r, [units[u][1] for u in us])
        if len(ix) < 2 or (iy is not None and len(iy) < 2):
            raise _TooSmall
        return float(stat(ix, iy))

    if len(units) < 2:
        return NAN_CI
    try:
        full = without()
        reps = np.array([without(u) for u in range(len(units))])
        rng = np.random.default_rng(seed)
        all_pairs = [(u, w) for u in range(len(units)) for w in range(u + 1, len(units))]
        k = min(len(all_pairs), pairs_per_unit * len(units))
        picked = [all_pairs[i] for i in rng.choice(len(all_pairs), k, replace=False)] if k else []
        beta = []
        for u, w in picked:
            try:
                beta.append(full - reps[u] - reps[w] + without(u, w))
            except _TooSmall:  # tiny sets: a pair's deletion may leave too few images; the pair is not used
                pass
        beta = np.array(beta)
    except _TooSmall:
        return NAN_CI  # a deletion would leave a side with fewer than 2 images
    if not (np.isfinite(reps).all() and np.isfinite(beta).all() and math.isfinite(full)):
        return NAN_CI
    var = jackknife_se(reps) ** 2
    excess = second_order_factor(len(units)) * len(all_pairs) * float(np.var(beta)) if len(beta) > 1 else 0.0
    corrected = var - min((1.0 if pairwise else 0.5) * excess, var / 2)
    estimate = full if estimate is None else float(estimate)
    lo, hi = t_interval(estimate, math.sqrt(corrected), len(units) - 1, level)
    if floor is not None and math.isfinite(lo):
        lo = max(lo, min(floor, estimate))
    return lo, hi


class _TooSmall(Exception):
    """A deletion would leave a side with fewer than 2 images."""


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
