"""Metric benchmarks: feature-pipeline efficiency and streaming-FID memory (CPU-friendly sizes)."""

import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from t2ibench.metrics.features import batches, extract
from t2ibench.metrics.fid import FID
from t2ibench.metrics.networks import load_features

N_IMAGES, BATCH, ROUNDS = 32, 16, 5


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_IMAGES):
        p = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_feature_throughput_vs_raw_forward(benchmark, pngs):
    """images/s from PNG files to features ÷ images/s of the bare network on pre-loaded batches.

    The two are timed alternately, and the ratio is the median of the per-round ratios, because a
    shared machine's speed drifts more between minutes than between two adjacent timings.
    """
    ext = load_features("random:inception")
    preloaded = list(batches(pngs, ext.preprocess, BATCH, num_workers=0))
    ext.forward(preloaded[0])  # warm-up
    raw_s, pipe_s = [], []

    def pipeline():
        t0 = time.perf_counter()
        feats = extract(pngs, ext, None, batch_size=BATCH)  # no cache: every image decoded and run
        pipe_s.append(time.perf_counter() - t0)
        return feats

    def one_round():
        t0 = time.perf_counter()
        for b in preloaded:
            ext.forward(b)
        raw_s.append(time.perf_counter() - t0)
        return pipeline()

    feats = benchmark.pedantic(one_round, rounds=ROUNDS)
    assert feats.shape == (N_IMAGES, 2048)
    raw, pipe = N_IMAGES / float(np.median(raw_s)), N_IMAGES / float(np.median(pipe_s))
    ratio = float(np.median(np.array(raw_s) / np.array(pipe_s)))
    benchmark.extra_info.update(raw_img_s=raw, pipeline_img_s=pipe, ratio=ratio)
    print(f"\nfeature throughput: pipeline {pipe:.2f} img/s, raw forward {raw:.2f} img/s, median ratio {ratio:.3f} "
          f"(per round: {', '.join(f'{r / p:.2f}' for r, p in zip(raw_s, pipe_s))})")


def _peak_streaming_fid(n: int, d: int = 2048, chunk: int = 500) -> int:
    rng = np.random.default_rng(0)
    tracemalloc.start()
    f = FID()
    for i in range(0, n, chunk):
        f.update(rng.random((min(chunk, n - i), d)))
    f.stats()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_streaming_fid_memory_is_flat(benchmark):
    small = _peak_streaming_fid(1_000)
    large = benchmark.pedantic(_peak_streaming_fid, args=(20_000,), rounds=1)
    benchmark.extra_info.update(peak_mb_n1000=small / 2**20, peak_mb_n20000=large / 2**20)
    print(f"\nstreaming FID peak (tracemalloc): N=1,000 {small / 2**20:.1f} MiB, N=20,000 {large / 2**20:.1f} MiB")
    assert large < 1.1 * small
