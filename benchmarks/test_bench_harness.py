"""Harness overhead against a bare diffusers loop on the same pipeline, knobs and images.

Reports two ratios, measured in the same process, interleaved to cancel drift:
- per-image latency that t2ibench records ÷ the bare loop's per-call time (target within ±5%);
- sweep wall time excluding model load ÷ the bare loop's wall time, PNG saving included in both
  (target ≤ 1.05).
Run: ``python -m pytest benchmarks/test_bench_harness.py -s`` (set T2IBENCH_BENCH_SIZE to change 256).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import yaml

PROMPTS = ["a red cube on a table", "a lighthouse at dusk", "a cat in sunglasses", "a bowl of ramen"]
SEEDS = [0, 1]
SIZE = int(os.environ.get("T2IBENCH_BENCH_SIZE", "256"))
STEPS = 10
ROUNDS = int(os.environ.get("T2IBENCH_BENCH_ROUNDS", "5"))


def bare_loop(out_dir) -> tuple[float, list[float]]:
    """What a hand-written benchmark does: load (not timed), one warm-up, then time each call and save each PNG."""
    import torch

    from t2ibench.backends.torch.random_models import tiny_sd

    pipe = tiny_sd()
    pipe.set_progress_bar_config(disable=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    kwargs = dict(num_inference_steps=STEPS, guidance_scale=7.5, height=SIZE, width=SIZE)
    t0 = time.perf_counter()  # the sweep: warm-up, calls and saves (as t2ibench's sweep_s, load excluded)
    pipe(PROMPTS[0], generator=torch.Generator("cpu").manual_seed(0), **kwargs)
    per_call = []
    for i, prompt in enumerate(PROMPTS):
        for seed in SEEDS:
            t = time.perf_counter()
            image = pipe(prompt, generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]
            per_call.append((time.perf_counter() - t) * 1000)
            image.save(out_dir / f"{i}-{seed}.png")
    return time.perf_counter() - t0, per_call


def harness_sweep(suite_path, out_dir) -> tuple[float, list[float]]:
    import t2ibench
    from t2ibench.store import RunStore

    run = t2ibench.run(suite_path, out=out_dir, device="cpu", metrics=False, fresh=True)
    with RunStore.open(run.run_dir) as store:
        sweep_s = store.get_meta("sweep_s")  # generation wall time less model load and unload
    return sweep_s, list(run.cells()["latency_ms"])


@pytest.mark.benchmark(group="harness-overhead")
def test_harness_overhead_vs_bare_loop(benchmark, tmp_path):
    suite = {"name": "bench", "model": "random:tiny-sd", "prompts": PROMPTS, "seeds": SEEDS,
             "defaults": {"steps": STEPS, "guidance_scale": 7.5, "width": SIZE, "height": SIZE,
                          "scheduler": "euler"},
             "timing": {"warmup": 1, "repeats": 1}}
    suite_path = tmp_path / "bench.yaml"
    suite_path.write_text(yaml.safe_dump(suite))
    bare_runs, harness_runs = [], []

    def one_round():  # both sides load a fresh pipeline per round, outside the timed sweep
        bare_runs.append(bare_loop(tmp_path / "bare"))
        harness_runs.append(harness_sweep(suite_path, tmp_path / "harness"))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    per_image = statistics.median(statistics.median(h[1]) / statistics.median(b[1])
                                  for b, h in zip(bare_runs, harness_runs))
    wall = statistics.median(h[0] / b[0] for b, h in zip(bare_runs, harness_runs))
    print("\nwall seconds (bare, t2ibench):", [(round(b[0], 3), round(h[0], 3)) for b, h in zip(bare_runs, harness_runs)])
    benchmark.extra_info.update(per_image_ratio=per_image, wall_ratio=wall, size=SIZE, steps=STEPS,
                                images=len(PROMPTS) * len(SEEDS))
    print(f"\n{SIZE}px, {STEPS} steps, {len(PROMPTS) * len(SEEDS)} images, {ROUNDS} interleaved rounds:"
          f"\n  per-image latency ratio (t2ibench / bare) = {per_image:.3f}"
          f"\n  sweep wall ratio excl. load (t2ibench / bare) = {wall:.3f}"
          f"\n  bare per-call median = {statistics.median(bare_runs[-1][1]):.1f} ms")
