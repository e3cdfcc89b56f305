"""Fréchet Inception Distance: the pytorch-fid formula and a streaming O(d²) accumulator."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np
from scipy import linalg

from t2ibench.errors import UserError
from t2ibench.metrics._arrays import Featurizer, as_features

MIN_UNBIASED_N = 2048
Stats = tuple[np.ndarray, np.ndarray]


class FIDBiasWarning(UserWarning):
    """FID on fewer than 2048 images is strongly biased upwards."""


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


def load_stats(path: str | Path) -> Stats:
    """``mu``, ``sigma`` from a pytorch-fid ``.npz``: a d-vector and a finite d×d matrix, or a UserError."""
    try:
        with np.load(path) as f:
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except (OSError, KeyError, ValueError, TypeError, EOFError) as e:
        raise UserError(f"{path}: not a FID statistics file with 'mu' and 'sigma' ({e})") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)) or len(mu) == 0:
        raise UserError(f"{path}: 'mu' must hold d values and 'sigma' a d×d matrix, got mu of shape "
                        f"{mu.shape} and sigma of shape {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"{path}: 'mu' or 'sigma' holds NaN or infinite values")
    return mu, sigma


def check_dims(a: str, d_a: int, b: str, d_b: int) -> None:
    """Both sides of a FID must come from the same feature layer."""
    if d_a != d_b:
        raise UserError(f"{a}: statistics of dimension {d_a} do not match {b} (dimension {d_b}); "
                        "compute both with the same feature network")


def save_stats(path: str | Path, stats: Stats) -> None:
    """Write ``mu``, ``sigma`` as pytorch-fid does (``np.savez_compressed``)."""
    np.savez_compressed(path, mu=stats[0], sigma=stats[1])


class FID:
    """Streaming FID: keeps n, the mean and the centred scatter matrix in float64.

    Batches are merged with Chan et al.'s pairwise update, which equals the running sums
    (n, Σx, Σxxᵀ) algebraically but does not cancel catastrophically; memory is O(d²) for any N.
    ``update`` takes ``(N, d)`` features, or images when an ``extractor`` is given.
    """

    higher_is_better = False

    def __init__(self, extractor: Featurizer | None = None,
                 reference: Union["FID", Stats, None] = None):
        self.extractor = extractor
        self.reference = reference
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def update(self, x: Any) -> None:
        f = as_features(x, self.extractor)
        if len(f) == 0:
            return
        nb, mb = len(f), f.mean(0)
        fc = f - mb
        m2b = fc.T @ fc
        if self._mean is None:
            self.n, self._mean, self._m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._m2 = self._m2 + m2b + np.outer(delta, delta) * (self.n * nb / n)
        self.n = n

    def stats(self) -> Stats:
        """(μ, Σ) with Σ the unbiased covariance (``np.cov``, ddof=1)."""
        if self.n < MIN_IMAGES:
            raise ValueError(f"FID needs at least {MIN_IMAGES} images, got {self.n}")
        return self._mean.copy(), self._m2 / (self.n - 1)

    def compute(self, reference: Union["FID", Stats, None] = None) -> float:
        """FID against ``reference`` (another FID or (μ, Σ)); warns when N < 2048."""
        ref = reference if reference is not None else self.reference
        if ref is None:
            raise ValueError("FID.compute needs a reference: FID(reference=…) or compute(reference)")
        mu2, sigma2 = ref.stats() if isinstance(ref, FID) else ref
        if min(self.n, ref.n if isinstance(ref, FID) else self.n) < MIN_UNBIASED_N:
            warnings.warn(bias_note(self.n), FIDBiasWarning, stacklevel=2)
        return frechet_distance(*self.stats(), mu2, sigma2)


def bias_note(n: int) -> str:
    return (f"FID on {n} < {MIN_UNBIASED_N} images is biased upwards and not comparable across "
            "sample sizes; prefer KID or CMMD")


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


# --- registration ------------------------------------------------------------------------------

from typing import Literal, Optional  # noqa: E402

from t2ibench.base import Frozen  # noqa: E402
from t2ibench.metrics.registry import METRICS, MetricSpec, NetworkCheck  # noqa: E402

MIN_IMAGES = 2  # a covariance needs two images


class FIDOptions(Frozen):
    """``fid: {against: reference, features: inception, resize: bilinear}``.

    ``against``: ``reference`` (the suite's reference config), a folder of images, or an
    ``.npz`` holding pytorch-fid ``mu``/``sigma``. ``features``: ``inception`` or
    ``random:inception``. ``weights``: an explicit path to the Inception weights file.
    """

    against: str = "reference"
    features: str = "inception"
    resize: Literal["bilinear", "clean"] = "bilinear"
    weights: Optional[str] = None


def score_fid(o: FIDOptions, ctx) -> list:
    """FID per config with a jackknife CI over prompts (``bootstrap.set_ci``).

    The trace term Tr sqrt(Σ_x Σ_ref) is computed exactly without a d×d ``sqrtm`` (``set_stats.fid_stat``):
    from both feature sets (nuclear norm of the n×m cross matrix) while the reference has fewer
    samples than dimensions, otherwise through one symmetric square root of Σ_ref (or, for a
    jackknife replicate that also deletes reference images, a Cholesky factor). These agree with
    pytorch-fid's ``sqrtm`` form (a test checks it on rank-deficient and full-rank statistics).
    """
    from t2ibench.metrics import bootstrap as bs
    from t2ibench.metrics import set_stats
    from t2ibench.metrics.networks import load_features
    from t2ibench.metrics.scoring import result, too_few

    ext = load_features(o.features, o.resize, o.weights)
    y = None
    if o.against.lower().endswith(".npz"):
        if not Path(o.against).is_file():
            raise UserError(f"metric fid: statistics file '{o.against}' does not exist")
        stats = load_stats(o.against)
        ref, ref_dim = set_stats.FidReference(stats), len(stats[0])
    else:
        ref_paths = ctx.reference_paths("fid", o.against)  # none when every reference cell failed
        if len(ref_paths) < MIN_IMAGES:
            return [too_few(cfg, "fid", len(ref_paths), MIN_IMAGES, ext.random_weights, "reference")
                    for cfg in ctx.candidates(o.against)]
        y = ctx.features(ext, ref_paths)
        ref, ref_dim = set_stats.FidReference(y), y.shape[1]
    ref_groups = ctx.reference_groups(o.against)
    out = []
    for cfg in ctx.candidates(o.against):
        recs = ctx.configs[cfg]
        x = ctx.features(ext, [r.path for r in recs])
        if len(x) < MIN_IMAGES:
            out.append(too_few(cfg, "fid", len(x), MIN_IMAGES, ext.random_weights))
            continue
        check_dims(o.against, ref_dim, f"the '{o.features}' features", x.shape[1])
        fid_of = set_stats.fid_stat(x, ref)
        value = fid_of(np.arange(len(x)), None)
        n_ref = len(y) if y is not None else None
        notes = [bias_note(n) for n in sorted({len(x), n_ref or len(x)}) if n < MIN_UNBIASED_N]
        ci = bs.set_ci(fid_of, [r.prompt_id for r in recs], ref_groups, seed=ctx.seed, estimate=value,
                       floor=0.0) if ctx.ci else None
        out.append(result(cfg, "fid", value, ci, ext.random_weights, len(x), notes,
                          **({"n_ref": n_ref} if n_ref is not None else {})))
    return out


FEATURES = ("inception", "random:inception")


def _fid_networks(o: FIDOptions) -> list[NetworkCheck]:
    from t2ibench.metrics.inception import FID_WEIGHTS_FILE
    from t2ibench.metrics.weights import check_name, random_weights, resolve_file

    check = lambda: check_name("features", o.features, FEATURES)  # noqa: E731
    if o.features.startswith("random:") or o.features not in FEATURES:
        return [NetworkCheck(f"features {o.features}", random_weights, check, option="features")]
    return [NetworkCheck("FID Inception", lambda: str(resolve_file(FID_WEIGHTS_FILE, what="FID Inception",
                                                                   explicit=o.weights)), check, option="features")]


METRICS.add("fid", MetricSpec(
    name="fid", options=FIDOptions, runner=score_fid, higher_is_better=False, against=True, per_image=False,
    gate="5%", label="FID", summary="Fréchet Inception Distance between two folders or .npz files",
    networks=_fid_networks, min_images=MIN_IMAGES, stats_files=True,
))
