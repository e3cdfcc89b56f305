"""Fréchet Inception Distance: the pytorch-fid formula and a streaming O(d²) accumulator."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np

from t2ibench.errors import UserError
from t2ibench.metrics._arrays import Featurizer, as_features
from t2ibench.metrics.kernels import (  # noqa: F401  (re-exported)
    fid_from_features, frechet_distance, psd_sqrt, trace_sqrt_cross, trace_sqrt_product)

MIN_UNBIASED_N = 2048
Stats = tuple[np.ndarray, np.ndarray]


class FIDBiasWarning(UserWarning):
    """FID on fewer than 2048 images is strongly biased upwards."""


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

    higher_is_better: bool  # from the registration below: direction is declared once, on the MetricSpec

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


def bias_note(n: int, label: str = "FID") -> str:
    return (f"{label} on {n} < {MIN_UNBIASED_N} images is biased upwards and not comparable across "
            "sample sizes; prefer KID or CMMD")


# --- registration ------------------------------------------------------------------------------


from pydantic import Field  # noqa: E402

from t2ibench.metrics.options import AT_SIZE, InceptionFeatures  # noqa: E402
from t2ibench.metrics.registry import METRICS, MetricSpec, NetworkCheck  # noqa: E402

MIN_IMAGES = 2  # a covariance needs two images



class FIDOptions(InceptionFeatures):
    """``fid: {against: reference, features: inception, resize: bilinear}``.

    ``against``: ``reference`` (the suite's reference config), a folder of images, or an
    ``.npz`` holding pytorch-fid ``mu``/``sigma``. ``features``: ``inception`` or
    ``random:inception``. ``weights``: an explicit path to the Inception weights file.
    """

    against: str = Field("reference", description="reference (the suite's reference config), a folder of images, "
                                                  "or an .npz of pytorch-fid statistics")


def score_fid(o: FIDOptions, ctx) -> list:
    """FID per config with a jackknife CI (``bootstrap.set_ci``) through :func:`score_frechet`.

    The trace term Tr sqrt(Σ_x Σ_ref) is computed exactly without a d×d ``sqrtm`` (``set_stats.fid_stat``):
    from both feature sets (nuclear norm of the n×m cross matrix) while the reference has fewer
    samples than dimensions, otherwise through one symmetric square root of Σ_ref (or, for a
    jackknife replicate that also deletes reference images, a Cholesky factor). These agree with
    pytorch-fid's ``sqrtm`` form (a test checks it on rank-deficient and full-rank statistics).
    """
    from t2ibench.metrics.networks import load_features

    return score_frechet("fid", load_features(o.features, o.resize, o.weights), o.against, ctx)


def score_frechet(metric: str, ext, against: str, ctx) -> list:
    """A Fréchet distance (``fid``, ``fd_dinov2``) of every candidate config's ``ext`` features, on the
    set metrics' one scoring path; its CI covers the distance at this set size (``bootstrap``)."""
    from t2ibench.metrics import set_stats
    from t2ibench.metrics.set_scoring import score_set

    refs: dict[int, set_stats.FidReference] = {}  # prepared once for every config

    def stat_of(x, ref):
        if id(ref) not in refs:
            refs[id(ref)] = set_stats.FidReference(ref.features if ref.stats is None else ref.stats)
        return set_stats.fid_stat(x, refs[id(ref)])

    def estimate_of(x, ref, stat):
        sizes = sorted({len(x), ref.n or len(x)})
        label = METRICS.get(metric).label
        return float(stat(np.arange(len(x)), None)), {}, [bias_note(n, label) for n in sizes if n < MIN_UNBIASED_N]

    return score_set(metric, ext, against, ctx, stat_of=stat_of, min_images=MIN_IMAGES, floor=0.0,
                     estimate_of=estimate_of)


FEATURES = ("inception", "random:inception")


def _fid_networks(o: InceptionFeatures) -> list[NetworkCheck]:
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
    estimand="the expected FID " + AT_SIZE,
))
FID.higher_is_better = METRICS.get("fid").higher_is_better
