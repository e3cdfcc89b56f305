"""CMMD (Jayasumana et al. 2024): biased RBF-kernel MMD on L2-normalised CLIP embeddings."""

from __future__ import annotations


import numpy as np

from t2ibench.metrics._arrays import FeatureSet

SIGMA = 10.0
SCALE = 1000.0
MIN_IMAGES = 2  # per side: with one image a set has no spread, and the biased MMD is meaningless


def l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rbf_kernel(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """k(x, y) = exp(−‖x−y‖² / (2σ²))."""
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.exp(-d2 / (2 * sigma**2))


def mean_rbf(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA, block: int = 2048) -> float:
    """Mean of k over all pairs, diagonal included, in row blocks to bound memory."""
    total = sum(rbf_kernel(x[i:i + block], y, sigma).sum() for i in range(0, len(x), block))
    return float(total / (len(x) * len(y)))


def cmmd(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA) -> float:
    """1000 · (E k(x,x′) + E k(y,y′) − 2 E k(x,y)) on normalised embeddings, float64."""
    if min(len(x), len(y)) < MIN_IMAGES:
        raise ValueError(f"CMMD needs at least {MIN_IMAGES} images on each side, got {len(x)} and {len(y)}")
    x, y = l2_normalise(np.asarray(x, np.float64)), l2_normalise(np.asarray(y, np.float64))
    return SCALE * (mean_rbf(x, x, sigma) + mean_rbf(y, y, sigma) - 2 * mean_rbf(x, y, sigma))


class CMMD(FeatureSet):
    """Streaming CMMD: keeps the embeddings, computes against a reference."""

    def compute(self, reference: "CMMD | np.ndarray | None" = None) -> float:
        return cmmd(self.features(), self.reference_features(reference))
