"""Kernel Inception Distance: unbiased polynomial-kernel MMD² over random subsets."""

from __future__ import annotations


import numpy as np

from t2ibench.metrics._arrays import Featurizer, FeatureSet


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

    The std is the population std (ddof=0), as torchmetrics reports it.
    """
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 images on each side, got {len(x)} and {len(y)}")
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
