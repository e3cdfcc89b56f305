"""The numerical kernels of the set metrics, beneath every metric module: Fréchet distance, its trace
terms, KID's polynomial kernel and unbiased MMD², CMMD's RBF kernel.

Pure numpy/scipy on float64 features; fid.py, kid.py, cmmd.py and set_stats.py import from here, and
nothing here imports a metric module.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """d² = ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2·sqrt(Σ₁Σ₂)), exactly as pytorch-fid computes it.

    When the product is singular enough that ``sqrtm`` is not finite, ``eps`` is added to both
    diagonals; an imaginary part above 1e-3 on the diagonal raises ``ValueError``.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def trace_sqrt_product(xr: np.ndarray) -> float:
    """Tr sqrt(Σ_ref Σ_x) given ``xr = x @ sqrt(Σ_ref)``, via symmetric eigenvalues (for bootstrap).

    With a = centred(xr)/sqrt(n−1), Σ_ref Σ_x is similar to aᵀa, whose non-zero eigenvalues are
    those of the n×n Gram matrix a·aᵀ, used when there are fewer samples than dimensions.
    """
    a = (xr - xr.mean(0)) / np.sqrt(len(xr) - 1)
    m = a @ a.T if len(xr) < xr.shape[1] else a.T @ a
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(m), 0, None)).sum())


def trace_sqrt_cross(x: np.ndarray, y: np.ndarray) -> float:
    """Tr sqrt(Σ_x Σ_y) straight from features, exact: the nuclear norm of a·bᵀ.

    With a = centred(x)/sqrt(n−1) and b likewise, Σ_xΣ_y = aᵀa·bᵀb has the non-zero eigenvalues
    of (a·bᵀ)(a·bᵀ)ᵀ, so the trace of its square root is the sum of the singular values of the
    n_x × n_y matrix a·bᵀ: O(n_x·n_y·d), no d×d square root.
    """
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())


def fid_from_features(x: np.ndarray, y: np.ndarray) -> float:
    """FID between two feature sets without forming d×d square roots (fast when n ≪ d)."""
    d = x.mean(0) - y.mean(0)
    return float(d @ d + x.var(0, ddof=1).sum() + y.var(0, ddof=1).sum() - 2 * trace_sqrt_cross(x, y))


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (negative eigenvalues clipped)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


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


SIGMA = 10.0
SCALE = 1000.0


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
