"""Serving on one CPU sitting: ``python benchmarks/serving_cpu.py [--write]``.

Two questions, each answered by one suite run through ``t2ibench.run`` as a user would, with the config
served by ``endpoint: self`` (a ``t2ibench serve`` subprocess on 127.0.0.1):

1. **Serving overhead at low load**: the served p50 (concurrency 1, from each request's scheduled send to its
   last byte: HTTP, JSON, base64 PNG, the queue and the client included) ÷ the offline p50 of the same config
   measured in process in the same sitting. The pipeline is slow enough that HTTP is not the whole call
   (``--size``/``--steps`` chosen so a call takes ≥ 300 ms). Target ≤ 1.05.
2. **Dynamic batching**: images/s of the ``offline`` scenario (every request at once: saturation) with
   ``max_batch_size`` 4 against 1, same requests, ``exact_batches: false`` (exact batches run one image per call).

The weights are random: latency only. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["a red cube on a table", "a lighthouse at dusk", "a cat in sunglasses", "a bowl of ramen",
           "a snowy mountain village", "an old map of a harbour"]


def overhead_suite(size: int, steps: int, seeds: int) -> dict:
    return {
        "name": "serving-overhead", "model": "random:tiny-sd", "prompts": PROMPTS, "seeds": list(range(seeds)),
        "defaults": {"steps": steps, "width": size, "height": size, "guidance_scale": 5.0},
        "matrix": {"scenario": ["single_stream", {"kind": "concurrency", "concurrency": 1, "warmup_requests": 2}]},
        "timing": {"warmup": 2, "repeats": 1},
    }


def batching_suite(size: int, steps: int, requests: int) -> dict:
    offline = {"kind": "offline", "requests": requests, "warmup_requests": 2, "max_wait_ms": 50, "max_queue": 256,
               "exact_batches": False}  # exact batches would run one image per call
    return {
        "name": "serving-batching", "model": "random:tiny-sd", "prompts": PROMPTS, "seeds": [0],
        "defaults": {"steps": steps, "width": size, "height": size, "guidance_scale": 5.0},
        "matrix": {"scenario": [{**offline, "max_batch_size": 1}, {**offline, "max_batch_size": 4}]},
        "timing": {"warmup": 1, "repeats": 1},
    }


def run(suite: dict, out: Path):
    import t2ibench
    from t2ibench.suites import Suite

    return t2ibench.run(Suite.model_validate(suite), out=out, device="cpu", metrics=False).results()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/serving-cpu-2core.{md,json}")
    args = parser.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        over = run(overhead_suite(args.size, args.steps, args.seeds), Path(tmp) / "overhead").set_index("config")
        batch = run(batching_suite(args.size, args.steps, args.requests), Path(tmp) / "batching").set_index("config")
    offline = over.loc["scenario=single_stream"]
    served = over.loc["scenario=concurrency concurrency=1"]
    one = batch.loc["scenario=offline max_batch_size=1 exact_batches=false"]
    four = batch.loc["scenario=offline max_batch_size=4 exact_batches=false"]
    out = {
        "machine": platform.processor() or platform.machine(), "python": sys.version.split()[0],
        "pipeline": f"random:tiny-sd {args.size}x{args.size}, {args.steps} steps, CFG",
        "overhead": {"offline_p50_ms": float(offline["latency_ms_p50"]), "served_p50_ms": float(served["latency_ms_p50"]),
                     "served_queue_ms_mean": float(served["queue_ms_mean"]),
                     "served_compute_ms_mean": float(served["compute_ms_mean"]),
                     "ratio": float(served["latency_ms_p50"] / offline["latency_ms_p50"]),
                     "requests": int(served["n_ok"])},
        "batching": {"images_per_s_batch1": float(one["achieved_rate"]), "images_per_s_batch4": float(four["achieved_rate"]),
                     "mean_batch_batch4": float(four["mean_batch"]),
                     "ratio": float(four["achieved_rate"] / one["achieved_rate"]), "requests": args.requests},
        "wall_s": round(time.time() - started, 1),
    }
    print(json.dumps(out, indent=2))
    if args.write:
        root = Path(__file__).parent / "results"
        (root / "serving-cpu-2core.json").write_text(json.dumps(out, indent=2) + "\n")
        o, b = out["overhead"], out["batching"]
        (root / "serving-cpu-2core.md").write_text(
            "# Serving on the 2-core CPU VM (`benchmarks/serving_cpu.py`)\n\n"
            f"Pipeline: {out['pipeline']}; random weights (latency only). One sitting, nothing else running.\n\n"
            "| question | figure |\n|---|---|\n"
            f"| offline p50 (in process) | {o['offline_p50_ms']:.1f} ms |\n"
            f"| served p50 (concurrency 1, endpoint: self, {o['requests']} requests) | {o['served_p50_ms']:.1f} ms "
            f"(queue {o['served_queue_ms_mean']:.1f} + compute {o['served_compute_ms_mean']:.1f} ms mean) |\n"
            f"| **serving overhead**: served ÷ offline p50 (target ≤ 1.05) | **{o['ratio']:.3f}** |\n"
            f"| offline scenario, max_batch_size 1 | {b['images_per_s_batch1']:.2f} images/s |\n"
            f"| offline scenario, max_batch_size 4 (mean batch {b['mean_batch_batch4']:.2f}) | "
            f"{b['images_per_s_batch4']:.2f} images/s |\n"
            f"| **dynamic batching**: images/s at 4 ÷ at 1 | **{b['ratio']:.2f}** |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
