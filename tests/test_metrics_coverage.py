"""Do the 95% CIs cover what they claim to estimate? Simulated features with known truth.

Each image's features are a prompt effect plus seed noise; candidate and reference share the
prompts (a prompt's effect moves both), as a config and the suite's reference config do. The CIs
are computed by the code evaluate uses (``set_stats`` statistics + ``bootstrap.set_ci``, and
``bootstrap.mean_ci`` for per-image metrics). The estimands (``bootstrap``'s docstring):
the expected value of the metric at this design (prompts × seeds, the reference), from a Monte Carlo
average of the statistic over fresh draws of the same design. For KID too: its estimator is unbiased
for the population MMD² only when every image is independent, and a suite's images share prompts
(seeds of one prompt, and the reference config's image of the same prompt), which bias it
(``test_kid_is_not_the_population_mmd_when_images_share_prompts``).
The pass band is 92–98% over 300 runs, in the regime where real sweeps live (n ≈ d: 30 prompts ×
2 seeds at d = 64, 100 images at d = 256 and d = 1024), for identical distributions, for a folder
reference (an independent sample, resampled too) and for fixed ``.npz`` statistics.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from t2ibench.metrics import bootstrap as bs
from t2ibench.metrics import set_stats as ss
from t2ibench.metrics.cmmd import l2_normalise
from t2ibench.metrics.kid import kid
from t2ibench.metrics.set_scoring import folder_units
from t2ibench.reports.compare import Gate, metric_row
from t2ibench.reports.export import MetricSummary

@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Thousands of small SVDs: one BLAS thread is many times faster than two contending ones."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


REPS = 300
COVER = (0.92, 0.98)
TRUTH_DRAWS = 1000


@dataclass(eq=False)  # hashed by identity: _truth caches per world
class World:
    """x = A_c z_p + shift + B_c ε (candidate), y = A_r z_p + B_r ε′ (reference); z_p the prompt's effect.

    ``identical``: the candidate is drawn exactly as the reference is.
    """

    d: int
    seed: int = 0
    shift_scale: float = 0.6
    identical: bool = False

    def __post_init__(self):
        g = np.random.default_rng(self.seed)
        d = self.d
        self.a_r = np.eye(d) + 0.3 * g.normal(size=(d, d)) / math.sqrt(d)
        self.a_c = self.a_r + 0.4 * g.normal(size=(d, d)) / math.sqrt(d)
        self.b_r = 0.6 * np.ones(d)  # the seed noise's scales (diagonal matrices, kept as vectors)
        self.b_c = 0.6 * g.uniform(0.6, 1.4, d)
        self.shift = self.shift_scale * g.normal(size=d) / math.sqrt(d)
        if self.identical:
            self.a_c, self.b_c, self.shift = self.a_r, self.b_r, np.zeros(d)

    def draw(self, rng, prompts: int, seeds: int, z: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Features of ``prompts`` × ``seeds`` images; ``z`` gives the prompts' effects (default: new prompts)."""
        z = rng.normal(size=(prompts, 1, self.d)) if z is None else z
        y = z @ self.a_r.T + rng.normal(size=(prompts, seeds, self.d)) * self.b_r
        x = z @ self.a_c.T + self.shift + rng.normal(size=(prompts, seeds, self.d)) * self.b_c
        groups = [f"p{i}" for i in range(prompts) for _ in range(seeds)]
        return x.reshape(-1, self.d), y.reshape(-1, self.d), groups

    def population(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """(μ, Σ) of the candidate's and the reference's images (each image marginally Gaussian)."""
        return ((self.shift, self.a_c @ self.a_c.T + np.diag(self.b_c**2)),
                (np.zeros(self.d), self.a_r @ self.a_r.T + np.diag(self.b_r**2)))

    def mmd2(self, kernel, normalise: bool, n: int = 200_000) -> tuple[float, float]:
        """Population MMD² E k(x,x′) + E k(y,y′) − 2 E k(x,y) over independent images; (value, MC std error)."""
        rng = np.random.default_rng(self.seed + 1)
        terms = []
        for _ in range(n // 100_000):
            x1, y1, _ = self.draw(rng, 100_000, 1)  # one image per prompt: independent draws
            x2, y2, _ = self.draw(rng, 100_000, 1)
            if normalise:
                x1, y1, x2, y2 = map(l2_normalise, (x1, y1, x2, y2))
            terms.append(kernel(x1, x2) + kernel(y1, y2) - kernel(x1, y2) - kernel(x2, y1))
        t = np.concatenate(terms)
        return float(t.mean()), float(t.std() / math.sqrt(len(t)))


@dataclass(frozen=True)
class Design:
    """How a run meets its reference: ``paired`` (the reference config, same prompts), ``folder`` (an
    independent sample of as many images, prompts unknown to the suite: grouped as t2ibench names its
    files) or ``npz`` (fixed statistics of 5,000 independent reference images)."""

    prompts: int
    seeds: int
    reference: str = "paired"

    def draw(self, world: World, rng) -> tuple[np.ndarray, np.ndarray, list[str], list[str] | None]:
        x, y, g = world.draw(rng, self.prompts, self.seeds)
        if self.reference == "paired":
            return x, y, g, g
        if self.reference == "folder":
            _, y, _ = world.draw(rng, self.prompts, self.seeds)
            names = [f"r{i // self.seeds}-{i % self.seeds}.png" for i in range(len(y))]
            return x, y, g, folder_units(names)
        return x, _npz(world), g, None


@functools.lru_cache
def _npz(world: World) -> tuple[np.ndarray, np.ndarray]:
    _, y, _ = world.draw(np.random.default_rng(99), 5000, 1)
    return y.mean(0), np.cov(y, rowvar=False)


def _stat(metric: str, x, y):
    """The statistic ``set_ci`` resamples, as the metric's scorer builds it."""
    if metric in ("fid", "fd"):
        return ss.fid_stat(x, y)
    if metric == "kid":
        return ss.kid_stat(x, y)
    return ss.cmmd_stat(l2_normalise(x), l2_normalise(y))


def _estimate_and_ci(metric: str, x, y, g, gr, rng):
    stat = _stat(metric, x, y)
    paired = gr is not None and gr is g
    if metric == "kid":  # the reported value: KID's random-subset average, the CI centred on it
        est = kid(x, y, subsets=3, subset_size=1000, seed=int(rng.integers(1 << 30)))[0]
        return est, bs.set_ci(stat, g, gr, paired=paired, estimate=est)
    est = stat(np.arange(len(x)), None)
    return est, bs.set_ci(stat, g, gr, paired=paired, estimate=est, floor=0.0, pairwise=metric == "cmmd")


def _simulate(world: World, design: Design, metric: str, reps: int = REPS, seed: int = 1) -> np.ndarray:
    """rows (estimate, lo, hi) over ``reps`` independent runs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        x, y, g, gr = design.draw(world, rng)
        est, (lo, hi) = _estimate_and_ci(metric, x, y, g, gr, rng)
        out.append((est, lo, hi))
    return np.array(out)


def _truth(world: World, design: Design, metric: str) -> tuple[float, float]:
    """(the estimand, its Monte Carlo standard error): the mean of the statistic over ``TRUTH_DRAWS`` fresh
    draws of the same design (KID's reported random-subset average has the same expectation)."""
    rng = np.random.default_rng(12345)
    values = []
    for _ in range(TRUTH_DRAWS):
        x, y, _, _ = design.draw(world, rng)
        values.append(_stat(metric, x, y)(np.arange(len(x)), None))
    return float(np.mean(values)), float(np.std(values) / math.sqrt(TRUTH_DRAWS))


def _check(name, rows, truth, truth_se=0.0, band=COVER):
    est, lo, hi = rows.T
    assert (lo <= est).all() and (est <= hi).all(), f"{name}: a CI excludes its own estimate"
    assert truth_se < 0.1 * est.std(), f"{name}: the Monte Carlo truth is too imprecise to judge coverage"
    cover = float(np.mean((lo <= truth) & (truth <= hi)))
    print(f"\n{name}: coverage {cover:.3f} over {len(rows)} runs (truth {truth:.4g}, mean estimate "
          f"{est.mean():.4g}, sd {est.std():.3g}, mean CI width {np.mean(hi - lo):.3g})")
    assert band[0] <= cover <= band[1], f"{name}: 95% CIs cover the truth in {cover:.1%} of runs"
    return cover


CASES = {  # name: (metric, world, design)
    "fid d=8 50x4": ("fid", dict(d=8, shift_scale=1.5), Design(50, 4)),
    "fid d=64 30x2": ("fid", dict(d=64), Design(30, 2)),
    "fid d=256 100x1": ("fid", dict(d=256), Design(100, 1)),
    "fid d=64 identical": ("fid", dict(d=64, identical=True), Design(30, 2)),
    "fid d=64 folder": ("fid", dict(d=64), Design(30, 2, "folder")),
    "fid d=64 npz": ("fid", dict(d=64), Design(30, 2, "npz")),
    "fd_dinov2 d=1024 100x1": ("fd", dict(d=1024), Design(100, 1)),
    "kid d=8 50x4": ("kid", dict(d=8, shift_scale=1.5), Design(50, 4)),
    "kid d=64 30x2": ("kid", dict(d=64), Design(30, 2)),
    "kid d=256 100x1": ("kid", dict(d=256), Design(100, 1)),
    "kid d=64 identical": ("kid", dict(d=64, identical=True), Design(30, 2)),
    "kid d=64 folder": ("kid", dict(d=64), Design(30, 2, "folder")),
    "kid d=1024 100x1": ("kid", dict(d=1024), Design(100, 1)),
    "cmmd d=8 50x4": ("cmmd", dict(d=8, shift_scale=1.5), Design(50, 4)),
    "cmmd d=64 30x2": ("cmmd", dict(d=64), Design(30, 2)),
    "cmmd d=256 100x1": ("cmmd", dict(d=256), Design(100, 1)),
    "cmmd d=64 identical": ("cmmd", dict(d=64, identical=True), Design(30, 2)),
    "cmmd d=64 folder": ("cmmd", dict(d=64), Design(30, 2, "folder")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_set_metric_cis_cover_their_estimand(case):
    metric, world_args, design = CASES[case]
    world = World(**world_args)
    truth, se = _truth(world, design, metric)
    _check(case, _simulate(world, design, metric), truth, se)


def test_kid_is_not_the_population_mmd_when_images_share_prompts():
    """Population MMD² of KID's kernel, from 200,000 independent pairs, against KID's mean over designs
    whose images share prompts: identical marginals give MMD² 0, yet KID sits far from it."""
    world, design = World(d=64, identical=True), Design(30, 2)
    population, se = world.mmd2(lambda a, b: ((a * b).sum(1) / a.shape[1] + 1.0) ** 3, normalise=False)
    at_design, _ = _truth(world, design, "kid")
    assert abs(population) < 4 * se
    rows = _simulate(world, design, "kid", reps=40)
    assert abs(at_design - population) > 10 * rows[:, 0].std() / math.sqrt(40)


def test_fid_population_value_is_not_the_estimand_at_this_size():
    """Where n ≈ d, FID at this set size lies far above the population FID: an interval for one is no
    interval for the other, which is why the estimand is stated."""
    from t2ibench.metrics import frechet_distance

    world, design = World(d=64), Design(30, 2)
    (mu_c, s_c), (mu_r, s_r) = world.population()
    at_size, _ = _truth(world, design, "fid")
    rows = _simulate(world, design, "fid", reps=40)
    population = frechet_distance(mu_c, s_c, mu_r, s_r)
    assert at_size > population + 10 * rows[:, 0].std()
    assert np.mean(rows[:, 1] > population) > 0.9


def test_compare_of_equal_sized_configs_raises_few_false_alarms():
    """Two configs drawn alike against one reference config, 30 prompts × 2 seeds at d = 64: compare's
    test of set metrics (non-overlapping 95% CIs) flags a difference in at most 5% of runs."""
    world = World(d=64)
    rng = np.random.default_rng(8)
    alarms = {"fid": 0, "kid": 0, "cmmd": 0}
    reps = 150
    for _ in range(reps):
        z = rng.normal(size=(30, 1, 64))  # the suite's prompts, shared by both configs and the reference
        x1, y, g = world.draw(rng, 30, 2, z)
        x2, _, _ = world.draw(rng, 30, 2, z)
        for metric in alarms:
            base = _estimate_and_ci(metric, x1, y, g, g, rng)
            cand = _estimate_and_ci(metric, x2, y, g, g, rng)
            summary = lambda e: MetricSummary(float(e[0]), e[1][0], e[1][1], 60, False, {})  # noqa: E731
            row = metric_row("c", "c", metric, summary(base), summary(cand), Gate(0.0, relative=False), seed=0)
            alarms[metric] += bool(row.significant)
    rates = {m: a / reps for m, a in alarms.items()}
    print(f"\nfalse alarm rates under the null: {rates}")
    assert all(r <= 0.05 for r in rates.values()), rates


def _per_image(rng, prompts, kind):
    """Per-image values with prompt effects and unequal image counts (1-6 per prompt); truth 30 / 0.4."""
    counts = rng.integers(1, 7, prompts)
    groups = [f"p{i}" for i, c in enumerate(counts) for _ in range(c)]
    idx = np.repeat(np.arange(prompts), counts)
    if kind == "clip":  # prompt effect sd 2, seed noise sd 1
        return 30 + rng.normal(0, 2, prompts)[idx] + rng.normal(0, 1, len(idx)), groups
    scale = rng.uniform(0.2, 0.6, prompts)  # lpips-like: skewed, positive, a per-prompt scale
    return scale[idx] * rng.gamma(2.0, 0.5, len(idx)), groups


@pytest.mark.parametrize("kind,truth", [("clip", 30.0), ("lpips", 0.4)])
def test_per_image_mean_cis_cover(kind, truth):
    """The point estimate is the mean over images; the CI's replicates are too (prompts weighted by count)."""
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(5 * REPS):
        v, g = _per_image(rng, 20, kind)
        rows.append((v.mean(), *bs.mean_ci(v, g)))
    _check(f"{kind}-like mean", np.array(rows), truth)


def test_jackknife_of_a_mean_is_the_textbook_interval():
    """Equal counts: the delete-one-prompt se is sd(prompt means)/√G, and the CI is mean ± t·se."""
    from scipy.stats import t

    rng = np.random.default_rng(0)
    v = rng.normal(size=(12, 3))
    groups = [f"p{i}" for i in range(12) for _ in range(3)]
    means = v.mean(1)
    half = t.ppf(0.975, 11) * means.std(ddof=1) / math.sqrt(12)
    assert bs.mean_ci(v.ravel(), groups) == pytest.approx((v.mean() - half, v.mean() + half), rel=1e-12)
    # unequal counts: each replicate is the mean over the images of the remaining prompts; centred on the mean
    v, groups = np.array([1.0, 2.0, 3.0, 10.0, 4.0]), ["a", "a", "a", "b", "c"]
    reps = np.array([7.0, 2.5, 4.0])  # without a, without b, without c
    se = math.sqrt(2 / 3 * ((reps - reps.mean()) ** 2).sum())
    lo, hi = bs.mean_ci(v, groups)
    assert (lo, hi) == pytest.approx((v.mean() - t.ppf(0.975, 2) * se, v.mean() + t.ppf(0.975, 2) * se))


def test_set_ci_takes_off_the_pair_interactions_of_a_pairwise_statistic():
    """A statistic that is exactly a sum over pairs of blocks, θ = Σ_{u<w} b_u b_w: its pair
    interactions are b_u b_w, and the plain jackknife variance counts them twice."""
    from scipy.stats import t

    b = np.array([0.3, -1.2, 0.8, 2.0, -0.4, 1.1])
    groups = [f"p{i}" for i in range(len(b))]
    stat = lambda ix, iy: float((b[ix].sum() ** 2 - (b[ix] ** 2).sum()) / 2)  # noqa: E731
    full = stat(np.arange(6), None)
    reps = np.array([stat(np.delete(np.arange(6), u), None) for u in range(6)])
    v_j = 5 / 6 * ((reps - reps.mean()) ** 2).sum()
    beta = np.array([b[u] * b[w] for u in range(6) for w in range(u + 1, 6)])  # all 15 pairs (≤ 3 × 6)
    excess = bs.second_order_factor(6) * 15 * beta.var()
    for pairwise, c in ((True, 1.0), (False, 0.5)):
        se = math.sqrt(v_j - min(c * excess, v_j / 2))
        expected = (full - t.ppf(0.975, 5) * se, full + t.ppf(0.975, 5) * se)
        assert bs.set_ci(stat, groups, pairwise=pairwise, pairs_per_unit=3) == pytest.approx(expected, rel=1e-9)


# --- mutation audit: resampling images instead of prompts; an unseeded resample ---------------------------

def test_ci_width_is_the_prompt_level_spread():
    """With strong prompt effects the CI's half-width matches t·(sd of the estimate across runs); an
    image-level resample (each image its own group) is far narrower and fails the same check."""
    from scipy.stats import t

    world = World(d=8, shift_scale=1.5)
    rng = np.random.default_rng(11)
    q = t.ppf(0.975, 29)
    est, prompt_half, image_half, fid_est, fid_half = [], [], [], [], []
    for _ in range(REPS):
        v, g = _per_image(rng, 30, "clip")
        est.append(v.mean())
        prompt_half.append(np.diff(bs.mean_ci(v, g))[0] / 2)
        image_half.append(np.diff(bs.mean_ci(v, [str(i) for i in range(len(v))]))[0] / 2)
        x, y, g = world.draw(rng, 30, 4)
        f, (lo, hi) = _estimate_and_ci("fid", x, y, g, g, rng)
        fid_est.append(f)
        fid_half.append((hi - lo) / 2)
    assert 0.85 < np.mean(prompt_half) / (q * np.std(est)) < 1.25
    assert np.mean(image_half) / (q * np.std(est)) < 0.7
    assert 0.85 < np.median(fid_half) / (q * np.std(fid_est)) < 1.5


def test_compare_pairs_by_prompt_with_the_same_ci():
    """compare's paired test of a per-image metric is ``bootstrap.mean_ci`` of the differences, grouped by prompt."""
    rng = np.random.default_rng(2)
    prompt_effect = np.repeat(rng.normal(0, 1, 10), 4)  # the change differs by prompt
    base = rng.normal(30, 1, 40)
    cand = base + 0.5 + prompt_effect + rng.normal(0, 0.1, 40)
    keys = [f"p{i // 4}:{i % 4}" for i in range(40)]
    summary = lambda v: MetricSummary(float(v.mean()), None, None, 40, False, dict(zip(keys, v)))  # noqa: E731
    row = metric_row("c", "c", "clip_score", summary(base), summary(cand), Gate(0.1, relative=False), seed=0)
    d = cand - base
    assert row.ci == pytest.approx(bs.mean_ci(d, [k.split(":")[0] for k in keys]))
    image_level = bs.mean_ci(d, keys)
    assert np.diff(row.ci)[0] > 2 * np.diff(image_level)[0]
    # 10 prompts' worth of evidence is not enough; 40 images taken as independent would call it significant
    assert row.significant is False and image_level[0] > 0
    assert "10 prompts" in row.test and json.dumps(row.ci)


def test_same_seed_same_ci_and_the_seed_picks_the_blocks():
    """More prompts than blocks: the seed fixes the random partition into blocks."""
    world = World(d=8)
    x, y, g = world.draw(np.random.default_rng(0), 3 * bs.MAX_BLOCKS, 2)
    ci = lambda seed: bs.set_ci(ss.fid_stat(x, y), g, g, seed=seed)  # noqa: E731
    assert ci(0) == ci(0)
    assert ci(0) != ci(1)
    assert bs.prompt_blocks(g, seed=4) == bs.prompt_blocks(g, seed=4) != bs.prompt_blocks(g, seed=5)
    assert sorted(len(b) for b in bs.prompt_blocks(g)) == [3] * bs.MAX_BLOCKS
    v = np.arange(len(g), dtype=float)
    assert bs.mean_ci(v, g, max_blocks=20, seed=3) == bs.mean_ci(v, g, max_blocks=20, seed=3)


def test_paired_deletion_removes_the_prompt_on_both_sides():
    seen = []

    def stat(ix, iy):
        seen.append((tuple(ix), None if iy is None else tuple(iy)))
        return float(len(ix))

    bs.set_ci(stat, ["a", "a", "b", "c"], ["b", "a", "c", "c"])
    assert seen[:4] == [((0, 1, 2, 3), (0, 1, 2, 3)), ((2, 3), (0, 2, 3)), ((0, 1, 3), (1, 2, 3)), ((0, 1, 2), (0, 1))]
    seen.clear()  # pairs of deleted prompts, for the interaction term
    bs.set_ci(stat, ["a", "a", "b", "b", "c", "c"], ["a", "b", "c", "a", "b", "c"])
    assert len(seen) == 1 + 3 + 3 and ((4, 5), (2, 5)) in seen[4:]  # a and b deleted from both sides
    seen.clear()
    bs.set_ci(stat, ["a", "a", "b", "c"])
    assert seen[1:4] == [((2, 3), None), ((0, 1, 3), None), ((0, 1, 2), None)]
    seen.clear()  # an independent reference: its units are dealt to the candidate's blocks, one each
    bs.set_ci(stat, ["a", "a", "b", "c"], ["x", "y", "z"], paired=False)
    deleted_ref = sorted(tuple(sorted({0, 1, 2} - set(iy))) for _, iy in seen[1:4])
    assert deleted_ref == [(0,), (1,), (2,)]
    assert all(math.isnan(v) for v in bs.set_ci(stat, ["a", "a"]))  # one prompt: no CI
    # deleting prompt a would leave the reference without images: no CI rather than a failing statistic
    assert all(math.isnan(v) for v in bs.set_ci(stat, ["a", "b", "b"], ["a", "a"]))


# --- the statistics the jackknife recomputes are the metrics themselves, on any subset ----------------------

def test_index_statistics_equal_the_metrics_on_the_chosen_images():
    from pytorch_fid.fid_score import calculate_frechet_distance
    from scipy import linalg
    from torchmetrics.image.kid import poly_mmd
    import torch

    from t2ibench.metrics.cmmd import cmmd

    rng = np.random.default_rng(3)
    for n, d in ((40, 12), (12, 30)):  # covariance path, and fewer images than dimensions (cross path)
        x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.3 + 0.2
        ix, iy = np.sort(rng.choice(n, n - 5, replace=False)), np.sort(rng.choice(n, n - 3, replace=False))
        stats = lambda a: (a.mean(0), np.cov(a, rowvar=False))  # noqa: E731
        expected = calculate_frechet_distance(*stats(x[ix]), *stats(y[iy]))
        assert ss.fid_stat(x, y)(ix, iy) == pytest.approx(expected, rel=1e-6)
        assert ss.fid_stat(x, y)(ix, None) == pytest.approx(calculate_frechet_distance(*stats(x[ix]), *stats(y)),
                                                           rel=1e-6)
        assert ss.fid_stat(x, stats(y))(ix, None) == pytest.approx(
            calculate_frechet_distance(*stats(x[ix]), *stats(y)), rel=1e-6)
        sx, sy = stats(x)[1], stats(y)[1]
        if n > d:
            assert ss.trace_sqrt_covs(sx, sy) == pytest.approx(np.trace(linalg.sqrtm(sx @ sy)).real, rel=1e-8)
        xn, yn = l2_normalise(x), l2_normalise(y)
        assert ss.cmmd_stat(xn, yn)(ix, iy) == pytest.approx(cmmd(x[ix], y[iy]), rel=1e-9)
        assert ss.cmmd_stat(xn, yn)(ix, None) == pytest.approx(cmmd(x[ix], y), rel=1e-9)
        # KID's statistic: equal sizes against torchmetrics; unequal sizes by hand
        same = ix[: len(ix) - 2], iy[: len(ix) - 2]
        torch_kid = poly_mmd(torch.from_numpy(x[same[0]]), torch.from_numpy(y[same[1]])).item()
        assert ss.kid_stat(x, y)(*same) == pytest.approx(torch_kid, rel=1e-9)
        k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
        off = lambda m: (m.sum() - np.trace(m)) / (len(m) * (len(m) - 1))  # noqa: E731
        by_hand = off(k(x[ix], x[ix])) + off(k(y[iy], y[iy])) - 2 * k(x[ix], y[iy]).mean()
        assert ss.kid_stat(x, y)(ix, iy) == pytest.approx(by_hand, rel=1e-9)
        # ``iy`` None is all of the reference
        assert ss.kid_stat(x, y)(ix, None) == ss.kid_stat(x, y)(ix, np.arange(n))
        assert ss.cmmd_stat(xn, yn)(ix, None) == pytest.approx(ss.cmmd_stat(xn, yn)(ix, np.arange(n)), rel=1e-12)


def test_kid_interval_is_anchored_on_the_reported_estimate():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 8)) + 0.3
    g = [f"p{i // 3}" for i in range(60)]
    stat = ss.kid_stat(x, y)
    full = stat(np.arange(60), np.arange(60))
    lo, hi = bs.set_ci(stat, g, g)
    lo2, hi2 = bs.set_ci(stat, g, g, estimate=full + 0.01)
    assert (lo2 - lo, hi2 - hi) == pytest.approx((0.01, 0.01)) and lo < full < hi


# --- evaluate hands the jackknife prompt ids, and the reference's when it is the reference config ------------

def test_evaluate_deletes_prompts_jointly_and_every_ci_holds_its_value(tmp_path, monkeypatch):
    """evaluate's wiring, with 16-dim stand-in features for the networks (the statistics are tested above)."""
    import zlib
    from types import SimpleNamespace

    from PIL import Image

    from t2ibench.metrics import evaluate as ev
    from t2ibench.metrics import networks
    from t2ibench.metrics.scoring import ScoringContext

    net = SimpleNamespace(random_weights=True, key="random:stand-in|16", to=lambda device: net)
    text = lambda prompts: np.stack([np.random.default_rng(len(p)).normal(size=16) for p in prompts])  # noqa: E731
    monkeypatch.setattr(networks, "load_features", lambda *a: net)
    monkeypatch.setattr(networks, "load_clip", lambda *a: SimpleNamespace(image=net, encode_text=text))
    monkeypatch.setattr(ScoringContext, "features", lambda ctx, ext, paths: np.stack(
        [np.random.default_rng(zlib.crc32(p.name.encode())).normal(size=16) for p in paths]))
    records, folder = [], tmp_path / "folder"
    folder.mkdir()
    for p in range(4):
        Image.new("RGB", (8, 8)).save(folder / f"f{p}.png")
        for seed in range(2):
            for cfg in ("ref", "cand"):
                records.append(ev.ImageRecord(cfg, f"p{p}", f"prompt {p}", seed, tmp_path / f"{cfg}-{p}-{seed}.png"))
    calls = []
    real_set, real_mean = bs.set_ci, bs.mean_ci
    monkeypatch.setattr(bs, "set_ci", lambda stat, g, r=None, **kw: calls.append(("set", list(g), r))
                        or real_set(stat, g, r, **kw))
    monkeypatch.setattr(bs, "mean_ci", lambda v, g, **kw: calls.append(("mean", list(g), None))
                        or real_mean(v, g, **kw))
    metrics = {"fid": {"features": "random:inception"}, "cmmd": {"model": "random:ViT-B-32"},
               "kid": {"features": "random:inception", "against": str(folder), "subsets": 3, "subset_size": 4},
               "clip_score": {"model": "random:ViT-B-32"}}
    rows = ev.evaluate(metrics, records, "ref", device="cpu", cache_dir=None, seed=0)
    prompts = [f"p{p}" for p in range(4) for _ in range(2)]
    files = [f"f{p}.png" for p in range(4)]  # a folder of independent images: each its own unit
    assert calls == [("set", prompts, prompts)] * 2 + [("set", prompts, files)] * 2 + [("mean", prompts, None)] * 2
    assert [r.metric for r in rows] == ["fid", "cmmd", "kid", "kid", "clip_score", "clip_score"]
    for r in rows:
        assert r.lo is not None and r.lo <= r.value <= r.hi, r
