"""Kernel Inception Distance: unbiased polynomial-kernel MMD² over random subsets."""

from __future__ import annotations


import numpy as np

from t2ibench.metrics._arrays import Featurizer, FeatureSet

MIN_IMAGES = 2  # per side: the unbiased MMD² leaves out the diagonal, so a subset needs two images


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
    return (x @ y.T * gamma + coef0) ** degree


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
