"""Pipeline latency of diffusion configs: timed by t2ibench, stored and compared by pytest-benchmark.

Each measured call (warm-up excluded) becomes one pytest-benchmark round, so the usual workflow works:
``python -m pytest benchmarks/test_bench_pipeline.py --benchmark-autosave``, then after a change
``... --benchmark-compare --benchmark-compare-fail=median:10%``.
T2IBENCH_BENCH_SIZE sets the image size (default 256; .ci/run uses 64 for a quick smoke).
"""

from __future__ import annotations

import os

import pytest
import yaml

SIZE = int(os.environ.get("T2IBENCH_BENCH_SIZE", "256"))


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m"])
def test_pipeline_latency(t2ibench_benchmark, benchmark, tmp_path, scheduler):
    suite = {"name": "bench-pipeline", "model": "random:tiny-sd", "prompts": ["a red cube", "a lighthouse at dusk"],
             "seeds": [0, 1, 2], "defaults": {"steps": 8, "width": SIZE, "height": SIZE, "scheduler": scheduler},
             "timing": {"warmup": 1, "repeats": 1}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    run = t2ibench_benchmark(path)
    latencies = run.cells()["latency_ms"]
    assert len(latencies) == 6
    if benchmark.enabled:
        assert benchmark.stats.stats.median * 1000 == pytest.approx(latencies.median())
