"""FID/KID/CMMD math against independent reference implementations (no networks)."""

import warnings

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

from t2ibench.metrics import CMMD, FID, HIGHER_IS_BETTER, KID, METRIC_OPTIONS, frechet_distance
from t2ibench.metrics.bootstrap import mean_ci, set_ci
from t2ibench.metrics.fid import FIDBiasWarning, psd_sqrt, trace_sqrt_product
from t2ibench.metrics.kid import kid, mmd2_unbiased
from t2ibench.metrics.fid import FIDOptions
from t2ibench.metrics.kid import KIDOptions

rng = np.random.default_rng(0)


def _stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("n,d", [(500, 32), (20, 64), (5, 64)])  # full rank, near-singular, rank 4
def test_frechet_distance_matches_pytorch_fid(n, d):
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) * 1.3 + 0.2
    ours = frechet_distance(*_stats(x), *_stats(y))
    assert ours == pytest.approx(calculate_frechet_distance(*_stats(x), *_stats(y)), abs=1e-6, rel=1e-9)


def test_frechet_distance_eps_retry_on_singular_product():
    s = np.zeros((8, 8))
    s[0, 0] = 1.0  # sqrtm of a rank-1 product is not finite on some paths; both must agree
    mu = np.zeros(8)
    assert frechet_distance(mu, s, mu + 1, s) == pytest.approx(calculate_frechet_distance(mu, s, mu + 1, s), abs=1e-6)


def test_streaming_fid_equals_np_cov_for_any_batching_and_order():
    x = rng.normal(size=(300, 16)) * 3 + 5
    y = rng.normal(size=(200, 16))
    ref = FID()
    ref.update(y)
    values = []
    for bs in (1, 7, 64):
        f = FID()
        for i in range(0, len(x), bs):
            f.update(x[i:i + bs])
        mu, sigma = f.stats()
        np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FIDBiasWarning)
            values.append(f.compute(ref))
    shuffled = FID(reference=ref)
    shuffled.update(rng.permutation(x))
    with pytest.warns(FIDBiasWarning, match="KID or CMMD"):
        values.append(shuffled.compute())
    assert max(values) - min(values) < 1e-8
    assert values[0] == pytest.approx(calculate_frechet_distance(*_stats(x), *_stats(y)), rel=1e-9)


def test_streaming_fid_accepts_torch_tensors_and_resets():
    f = FID()
    f.update(torch.randn(10, 4))
    f.reset()
    assert f.n == 0 and FID.higher_is_better is False


def test_fid_self_is_zero():
    x = rng.normal(size=(100, 8))
    assert abs(frechet_distance(*_stats(x), *_stats(x))) < 1e-8


def test_bootstrap_trace_formula_matches_sqrtm():
    from scipy import linalg

    for n in (10, 200):  # Gram path (n < d) and covariance path
        x, y = rng.normal(size=(n, 32)), rng.normal(size=(50, 32))
        sy = np.cov(y, rowvar=False)
        sx = np.cov(x, rowvar=False)
        expected = np.trace(linalg.sqrtm(sy @ sx)).real
        assert trace_sqrt_product(x @ psd_sqrt(sy)) == pytest.approx(expected, rel=1e-6)


def test_kid_kernel_matches_torchmetrics_poly_mmd():
    x, y = rng.normal(size=(40, 20)), rng.normal(size=(40, 20)) + 0.3
    expected = poly_mmd(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-10)


def test_kid_matches_torchmetrics_metric():
    # With subset_size == n every subset is a permutation of the whole set, so both
    # implementations must agree exactly whatever their random number generators.
    x, y = rng.normal(size=(30, 20)), rng.normal(size=(30, 20)) * 1.2
    tm = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=5, subset_size=30)
    tm.update(torch.from_numpy(y), real=True)
    tm.update(torch.from_numpy(x), real=False)
    tm_mean, tm_std = tm.compute()
    ref = KID(subsets=5, subset_size=30)
    ref.update(y)
    ours = KID(reference=ref, subsets=5, subset_size=30)
    ours.update(x[:10])
    ours.update(x[10:])
    mean, std = ours.compute()
    assert mean == pytest.approx(tm_mean.item(), rel=1e-10)
    assert std == pytest.approx(tm_std.item(), abs=1e-12)


def test_kid_subsets_are_seeded_and_same_distribution_is_near_zero():
    # (KID of a set against itself is not 0: the unbiased estimator counts k(x_i, x_i) in the
    # cross term, a -O(1/m) bias; an independent sample of the same distribution is ~0.)
    x, x2, y = rng.normal(size=(200, 16)), rng.normal(size=(200, 16)), rng.normal(size=(200, 16)) + 0.5
    assert kid(x, y, 10, 50, seed=3) == kid(x, y, 10, 50, seed=3)
    assert kid(x, y, 10, 50, seed=3) != kid(x, y, 10, 50, seed=4)
    assert abs(kid(x, x2, 10, 200)[0]) < 0.05 * kid(x, y, 10, 200)[0]


def _cmmd_numpy(x, y, sigma=10.0):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * sigma**2))

    return 1000 * (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_cmmd_matches_direct_formula_and_self_is_zero():
    x, y = rng.normal(size=(25, 12)), rng.normal(size=(17, 12)) + 0.4
    ref = CMMD()
    ref.update(y)
    c = CMMD(reference=ref)
    c.update(torch.from_numpy(x))
    assert c.compute() == pytest.approx(_cmmd_numpy(x, y), rel=1e-9)
    same = CMMD(reference=c)
    same.update(x)
    assert abs(same.compute()) < 1e-9


def test_bootstrap_is_seeded_and_brackets_the_mean():
    v = rng.normal(size=60)
    groups = [f"p{i // 3}" for i in range(60)]
    lo, hi = mean_ci(v, groups, seed=1)
    assert (lo, hi) == mean_ci(v, groups, seed=1)
    assert lo < v.mean() < hi
    assert set_ci(lambda ix, _: float(v[ix].mean()), groups, seed=0)[0] < v.mean()


def test_options_are_strict_and_directions_known():
    with pytest.raises(ValueError):
        FIDOptions(resise="clean")
    with pytest.raises(ValueError, match="npz"):
        KIDOptions(against="stats.npz")
    assert FIDOptions(against="ref.npz").against == "ref.npz"
    assert set(METRIC_OPTIONS) <= set(HIGHER_IS_BETTER)
    assert HIGHER_IS_BETTER["clip_score"] and not HIGHER_IS_BETTER["fid"]
