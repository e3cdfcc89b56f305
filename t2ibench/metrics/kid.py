"""Kernel Inception Distance: unbiased polynomial-kernel MMD² over random subsets."""

from __future__ import annotations


import numpy as np

from t2ibench.metrics._arrays import Featurizer, FeatureSet
from t2ibench.metrics.kernels import mmd2_unbiased, poly_kernel  # noqa: F401  (re-exported)


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

from pydantic import Field, field_validator  # noqa: E402

from t2ibench.metrics.options import InceptionFeatures  # noqa: E402
from t2ibench.metrics.registry import METRICS, MetricSpec, NetworkCheck, no_npz  # noqa: E402

MIN_IMAGES = 2  # the unbiased MMD² leaves out the diagonal: two images a side at least


class KIDOptions(InceptionFeatures):
    """``kid: {against: reference, features: inception}``; ``against`` cannot be an ``.npz``."""

    against: str = Field("reference", description="reference (the suite's reference config) or a folder "
                                                  "of images")
    subsets: int = Field(100, gt=0, description="random subsets the MMD is averaged over")
    subset_size: int = Field(1000, gt=1, description="images per subset (cut to the smaller set's size)")
    degree: int = Field(3, gt=0, description="degree of the polynomial kernel")

    _against = field_validator("against")(no_npz)


def score_kid(o: KIDOptions, ctx) -> list:
    """KID per config: the random-subset average, with the jackknife CI of the full unbiased MMD² centred on it."""
    from t2ibench.metrics import set_stats
    from t2ibench.metrics.networks import load_features
    from t2ibench.metrics.set_scoring import score_set

    def estimate_of(x, ref, stat):
        y = ref.features
        mean, std = kid(x, y, o.subsets, o.subset_size, o.degree, ctx.seed)
        notes = [n for n in (subset_note(o.subset_size, len(x), len(y)), negative_note(mean)) if n]
        return mean, {"kid_std": std}, notes

    return score_set("kid", load_features(o.features, o.resize, o.weights), o.against, ctx,
                     stat_of=lambda x, ref: set_stats.kid_stat(x, ref.features, o.degree), min_images=MIN_IMAGES,
                     floor=None, estimate_of=estimate_of)


def _kid_networks(o: KIDOptions) -> list[NetworkCheck]:
    from t2ibench.metrics.fid import _fid_networks

    return _fid_networks(o)


METRICS.add("kid", MetricSpec(
    name="kid", options=KIDOptions, runner=score_kid, higher_is_better=False, against=True, per_image=False,
    gate="10%", label="KID", summary="Kernel Inception Distance (mean ± std over subsets)",
    networks=_kid_networks, min_images=MIN_IMAGES,
    estimand=("the expected KID at this design (its unbiased estimator assumes independent images; a suite's "
              "images share prompts, across seeds and with the reference config)"),
))
KID.higher_is_better = METRICS.get("kid").higher_is_better
