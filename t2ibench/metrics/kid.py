"""Kernel Inception Distance: unbiased polynomial-kernel MMD² over random subsets."""

from __future__ import annotations


import numpy as np

from t2ibench.metrics._arrays import Featurizer, FeatureSet


def subset_note(subset_size: int, n_x: int, n_y: int) -> str | None:
    """Say so when :func:`kid` cuts the subset size to the smaller set (None when it does not)."""
    m = min(subset_size, n_x, n_y)
    if m == subset_size:
        return None
    note = f"KID subset size cut from {subset_size} to {m} (the smaller set's size)"
    if n_x == n_y == m:
        note += "; every subset is the whole set, so kid_std is 0 and measures no uncertainty"
    return note


def negative_note(value: float) -> str | None:
    """A KID below 0 is the unbiased estimator's noise, not a 'better than identical' score."""
    if value < 0:
        return "KID < 0: no difference measurable at this sample size (the unbiased estimate can fall below 0)"
    return None


def poly_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (γ·xᵀy + coef0)^degree with γ = 1/d by default."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    base = x @ y.T * gamma + coef0
    if isinstance(degree, int) and degree >= 1:  # repeated products: several times faster than a float pow
        out = base.copy()
        for _ in range(degree - 1):
            out *= base
        return out
    return base**degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD² of two equally sized samples (diagonals of k_xx and k_yy excluded)."""
    m = len(x)
    kxx, kyy, kxy = poly_kernel(x, x, degree), poly_kernel(y, y, degree), poly_kernel(x, y, degree)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / m**2)


def kid(x: np.ndarray, y: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        degree: int = 3, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of MMD² over ``subsets`` random subsets of size min(subset_size, |x|, |y|).

    The std is the population std (ddof=0), as torchmetrics reports it. :func:`subset_note` says
    when the subset size is cut.
    """
    m = min(subset_size, len(x), len(y))
    if m < MIN_IMAGES:
        raise ValueError(f"KID needs at least {MIN_IMAGES} images on each side, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    vals = np.array([
        mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)], degree)
        for _ in range(subsets)
    ])
    return float(vals.mean()), float(vals.std())


class KID(FeatureSet):
    """Streaming KID: keeps the features (KID needs them), computes against a reference."""

    def __init__(self, extractor: Featurizer | None = None, reference: "KID | np.ndarray | None" = None,
                 subsets: int = 100, subset_size: int = 1000, degree: int = 3, seed: int = 0):
        self.subsets, self.subset_size, self.degree, self.seed = subsets, subset_size, degree, seed
        super().__init__(extractor, reference)

    def compute(self, reference: "KID | np.ndarray | None" = None) -> tuple[float, float]:
        """(KID mean, KID std)."""
        y = self.reference_features(reference)
        return kid(self.features(), y, self.subsets, self.subset_size, self.degree, self.seed)


# --- registration ------------------------------------------------------------------------------

from typing import Literal, Optional  # noqa: E402

from pydantic import Field, field_validator  # noqa: E402

from t2ibench.base import Frozen  # noqa: E402
from t2ibench.metrics.registry import METRICS, MetricSpec, NetworkCheck, no_npz  # noqa: E402

MIN_IMAGES = 2  # the unbiased MMD² leaves out the diagonal: two images a side at least


class KIDOptions(Frozen):
    """``kid: {against: reference, features: inception}``; ``against`` cannot be an ``.npz``."""

    against: str = Field("reference", description="reference (the suite's reference config) or a folder "
                                                  "of images")
    features: str = Field("inception", description="feature network: inception, or random:inception "
                                                   "(random weights, for tests)")
    resize: Literal["bilinear", "clean"] = Field(
        "bilinear", description="resizing to 299×299: bilinear (as pytorch-fid) or clean (PIL bicubic, as clean-fid)")
    weights: Optional[str] = Field(None, description="path of the Inception weights file "
                                                     "(pt_inception-2015-12-05-6726825d.pth); default: looked up in "
                                                     "$T2IBENCH_WEIGHTS, then torch hub's checkpoints")
    subsets: int = Field(100, gt=0, description="random subsets the MMD is averaged over")
    subset_size: int = Field(1000, gt=1, description="images per subset (cut to the smaller set's size)")
    degree: int = Field(3, gt=0, description="degree of the polynomial kernel")

    _against = field_validator("against")(no_npz)


def score_kid(o: KIDOptions, ctx) -> list:
    """KID per config; its CI is the prompt jackknife of the full U-statistic, shifted onto the reported KID."""
    from t2ibench.metrics import bootstrap as bs
    from t2ibench.metrics import set_stats
    from t2ibench.metrics.networks import load_features
    from t2ibench.metrics.scoring import result, too_few

    ext = load_features(o.features, o.resize, o.weights)
    ref_paths = ctx.reference_paths("kid", o.against)  # none when every reference cell failed
    if len(ref_paths) < MIN_IMAGES:
        return [too_few(cfg, "kid", len(ref_paths), MIN_IMAGES, ext.random_weights, "reference")
                for cfg in ctx.candidates(o.against)]
    y = ctx.features(ext, ref_paths)
    ref_groups = ctx.reference_groups(o.against)
    out = []
    for cfg in ctx.candidates(o.against):
        recs = ctx.configs[cfg]
        x = ctx.features(ext, [r.path for r in recs])
        if min(len(x), len(y)) < MIN_IMAGES:
            side = "reference" if len(y) < MIN_IMAGES else ""
            out.append(too_few(cfg, "kid", min(len(x), len(y)), MIN_IMAGES, ext.random_weights, side))
            continue
        mean, std = kid(x, y, o.subsets, o.subset_size, o.degree, ctx.seed)
        notes = [n for n in (subset_note(o.subset_size, len(x), len(y)), negative_note(mean)) if n]
        ci = None
        if ctx.ci:  # the jackknife of the full U-statistic, anchored on the reported subset mean
            stat = set_stats.kid_stat(x, y, o.degree, paired=ref_groups is not None)
            ci = bs.set_ci(stat, [r.prompt_id for r in recs], ref_groups, seed=ctx.seed, estimate=mean)
        out.append(result(cfg, "kid", mean, ci, ext.random_weights, len(x), notes, kid_std=std, n_ref=len(y)))
    return out


def _kid_networks(o: KIDOptions) -> list[NetworkCheck]:
    from t2ibench.metrics.fid import FIDOptions, _fid_networks

    return _fid_networks(FIDOptions(features=o.features, resize=o.resize, weights=o.weights))


METRICS.add("kid", MetricSpec(
    name="kid", options=KIDOptions, runner=score_kid, higher_is_better=False, against=True, per_image=False,
    gate="10%", label="KID", summary="Kernel Inception Distance (mean ± std over subsets)",
    networks=_kid_networks, min_images=MIN_IMAGES,
))
