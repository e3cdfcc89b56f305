"""Set metrics as functions of image indices, ``stat(cand_ix, ref_ix) -> float``, for ``bootstrap.set_ci``.

Each builder does the heavy work once (kernel matrices, the reference's square root) so that a
jackknife replicate only indexes into it. ``ref_ix`` is None for all of the reference (and always for
fixed statistics, an ``.npz``); with reference features and ``ref_ix`` given, the reference side is
recomputed on those images (a deleted block of prompts, or of a folder's images). ``stat(all, all)``
is the metric itself (KID: the unbiased MMD² on all images, the expectation of its subset average).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from t2ibench.metrics.kernels import SCALE, poly_kernel, psd_sqrt, rbf_kernel, trace_sqrt_cross, trace_sqrt_product

IndexStat = Callable[[np.ndarray, "np.ndarray | None"], float]
ROW_BLOCK = 2048


def trace_sqrt_covs(sig_x: np.ndarray, sig_y: np.ndarray) -> float:
    """Tr sqrt(Σ_x Σ_y) from two d×d covariances: Σ_xΣ_y is similar to LᵀΣ_xL with Σ_y = LLᵀ (Cholesky).

    Falls back to the symmetric square root when Σ_y is singular.
    """
    try:
        lower = np.linalg.cholesky(sig_y)
    except np.linalg.LinAlgError:
        lower = psd_sqrt(sig_y)
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(lower.T @ sig_x @ lower), 0, None)).sum())


def _left_out(ix: np.ndarray, n: int) -> np.ndarray:
    """The indices in range(n) that ``ix`` (distinct) leaves out."""
    keep = np.zeros(n, bool)
    keep[ix] = True
    return np.flatnonzero(~keep)


class Moments:
    """Mean, total variance and covariance of any subset of the rows of ``x``, by downdating the
    full sums with the rows left out: O(left out · d²) per subset rather than O(n · d²).

    Rows are centred on the full mean first, so the downdate keeps float64 precision.
    """

    def __init__(self, x: np.ndarray):
        self.centre = x.mean(0)
        self.xc = x - self.centre
        self.sum, self.sq = self.xc.sum(0), (self.xc**2).sum(0)
        self._scatter: np.ndarray | None = None

    def _parts(self, ix: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        out = _left_out(ix, len(self.xc))
        return out, len(ix), (self.sum - self.xc[out].sum(0)) / len(ix)

    def mean_var(self, ix: np.ndarray) -> tuple[np.ndarray, float]:
        """(mean, Σ_j var_j with ddof=1) of ``x[ix]``."""
        out, n, m = self._parts(ix)
        sq = self.sq - (self.xc[out] ** 2).sum(0)
        return self.centre + m, float((sq - n * m * m).sum() / (n - 1))

    def cov(self, ix: np.ndarray) -> np.ndarray:
        """``np.cov(x[ix], rowvar=False)``."""
        if self._scatter is None:
            self._scatter = self.xc.T @ self.xc
        out, n, m = self._parts(ix)
        rest = self.xc[out]
        return (self._scatter - rest.T @ rest - n * np.outer(m, m)) / (n - 1)


class FidReference:
    """The reference side of FID, prepared once for every config: features ``y`` or statistics (μ, Σ)."""

    def __init__(self, ref: np.ndarray | tuple[np.ndarray, np.ndarray]):
        if isinstance(ref, tuple):
            self.y, (self.mu, self.sigma) = None, ref
        else:
            self.y, self.mu, self.sigma = ref, ref.mean(0), np.cov(ref, rowvar=False)
            self.moments = Moments(ref)
        self.trace = float(np.trace(self.sigma))
        cross = self.y is not None and len(self.y) < self.y.shape[1]
        self.root = None if cross else psd_sqrt(self.sigma)  # for Tr sqrt(Σ_x Σ_ref) against all of it


def trace_sqrt_gram(g: np.ndarray) -> float:
    """Tr sqrt(Σ_x Σ_y) from the n×m block ``g = x @ yᵀ`` of the chosen images, as ``trace_sqrt_cross``
    computes it from the features: centring both sides is double-centring ``g``, so a replicate costs
    O(n·m) before its SVD instead of O(n·m·d)."""
    c = g - g.mean(0, keepdims=True) - g.mean(1, keepdims=True) + g.mean()
    return float(np.linalg.svd(c / np.sqrt((len(g) - 1) * (g.shape[1] - 1)), compute_uv=False).sum())


def fid_stat(x: np.ndarray, ref: FidReference | np.ndarray | tuple[np.ndarray, np.ndarray]) -> IndexStat:
    """FID of ``x[ix]`` against the reference: its rows ``ref_ix`` when given (paired), else all of it.

    Against all of the reference, Tr sqrt(Σ_x Σ_ref) comes from ``x @ sqrt(Σ_ref)`` (or from the cross
    matrix while the reference has fewer images than dimensions); against a subset, from both
    covariances (or the cross matrix while either side has fewer images than dimensions).
    """
    ref = ref if isinstance(ref, FidReference) else FidReference(ref)
    mx = Moments(x)
    xr = None if ref.root is None else x @ ref.root
    gram = None if ref.y is None or min(len(x), len(ref.y)) >= x.shape[1] else x @ ref.y.T

    def stat(ix: np.ndarray, iy: np.ndarray | None) -> float:
        mu_x, tr_x = mx.mean_var(ix)
        if iy is None or ref.y is None:
            cross = trace_sqrt_gram(gram[ix]) if xr is None else trace_sqrt_product(xr[ix])
            d = mu_x - ref.mu
            return float(d @ d + tr_x + ref.trace - 2 * cross)
        mu_y, tr_y = ref.moments.mean_var(iy)
        if min(len(ix), len(iy)) < x.shape[1]:
            cross = trace_sqrt_gram(gram[np.ix_(ix, iy)]) if gram is not None else trace_sqrt_cross(x[ix], ref.y[iy])
        else:
            cross = trace_sqrt_covs(mx.cov(ix), ref.moments.cov(iy))
        d = mu_x - mu_y
        return float(d @ d + tr_x + tr_y - 2 * cross)

    return stat


class PairMeans:
    """Means of a kernel ``k(a_i, b_j)`` over index subsets, from row and column sums computed once.

    ``mean(ix, iy)`` is the mean of ``k(a[ix], b[iy])`` (distinct indices): the full sum less the rows
    and columns left out, plus their crossing (evaluated for the left-out images only), so a replicate
    that drops a few prompts costs little more than the dropped images, and memory stays O(n) however
    large a folder is. ``off_diagonal`` (``b`` is ``a``) leaves out the pairs i = i, as an unbiased
    MMD² does.
    """

    def __init__(self, kernel: Callable[[np.ndarray, np.ndarray], np.ndarray], a: np.ndarray,
                 b: np.ndarray | None = None):
        self.kernel, self.a, self.same = kernel, a, b is None
        self.b = a if b is None else b
        self.rows, self.cols = np.zeros(len(self.a)), np.zeros(len(self.b))
        self.diag = np.zeros(len(self.a)) if self.same else None
        for i in range(0, len(self.a), ROW_BLOCK):
            k = kernel(self.a[i:i + ROW_BLOCK], self.b)
            self.rows[i:i + ROW_BLOCK] = k.sum(1)
            self.cols += k.sum(0)
            if self.same:
                self.diag[i:i + ROW_BLOCK] = np.diagonal(k[:, i:i + ROW_BLOCK])
        self.total = float(self.rows.sum())

    def mean(self, ix: np.ndarray | None, iy: np.ndarray | None, off_diagonal: bool = False) -> float:
        """None for all of a side."""
        ix = np.arange(len(self.a)) if ix is None else ix
        iy = np.arange(len(self.b)) if iy is None else iy
        out_x, out_y = _left_out(ix, len(self.rows)), _left_out(iy, len(self.cols))
        total = self.total - self.rows[out_x].sum() - self.cols[out_y].sum()
        if len(out_x) and len(out_y):
            total += float(self.kernel(self.a[out_x], self.b[out_y]).sum())
        count = len(ix) * len(iy)
        if off_diagonal:
            total, count = total - self.diag[ix].sum(), count - len(ix)
        return float(total / count)


def kid_stat(x: np.ndarray, y: np.ndarray, degree: int = 3) -> IndexStat:
    """Unbiased polynomial-kernel MMD²: same-set pairs i≠j, all cross pairs (the expectation of KID's
    random-subset average). ``iy`` None: all of ``y``."""
    kern = lambda a, b: poly_kernel(a, b, degree)  # noqa: E731
    kxx, kyy, kxy = PairMeans(kern, x), PairMeans(kern, y), PairMeans(kern, x, y)

    def stat(ix: np.ndarray, iy: np.ndarray | None) -> float:
        return kxx.mean(ix, ix, True) + kyy.mean(iy, iy, True) - 2 * kxy.mean(ix, iy)

    return stat


def cmmd_stat(x: np.ndarray, y: np.ndarray) -> IndexStat:
    """CMMD (biased RBF MMD², ×1000) on L2-normalised embeddings ``x``, ``y``. ``iy`` None: all of ``y``."""
    kxx, kyy, kxy = PairMeans(rbf_kernel, x), PairMeans(rbf_kernel, y), PairMeans(rbf_kernel, x, y)

    def stat(ix: np.ndarray, iy: np.ndarray | None) -> float:
        return SCALE * (kxx.mean(ix, ix) + kyy.mean(iy, iy) - 2 * kxy.mean(ix, iy))

    return stat
