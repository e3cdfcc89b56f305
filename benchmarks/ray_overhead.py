"""The Ray executor's overhead against the local executor, on CPU: ``python benchmarks/ray_overhead.py``.

One sweep of ``random:tiny-sd`` (32², 2 steps, 2 configs × 8 prompts × 3 seeds = 48 cells) runs alternately
with the local executor (A) and the Ray executor (B) with one actor (``max_actors=1,
cpus_per_actor=<threads>``: both use the same torch threads, default 1, and compute the same images), ABAB…;
each Ray run starts its own local instance, as ``t2ibench run --executor ray`` does. Then the same sweep on
Ray with one actor per CPU, and the round trip of one actor call on a warm actor.

Figures per run: ``wall`` (the whole ``execute``: for Ray, starting the instance and the actors too),
``generation`` (the executor's time: actor start and model load included) and ``per cell`` (the steady
interval between the first and the last cell's commit, divided by the cells between them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

SUITE = {
    "name": "ray-overhead", "model": "random:tiny-sd", "prompts": [f"prompt number {i}" for i in range(8)],
    "seeds": [0, 1, 2], "defaults": {"steps": 2, "width": 32, "height": 32},
    "matrix": {"guidance_scale": [5.0, 7.5]}, "timing": {"warmup": 0, "repeats": 1},
}


def one_run(suite, out: Path, executor: str, options: dict) -> dict:
    from t2ibench.orchestration import execute
    from t2ibench.store import RunStore

    t0 = time.perf_counter()
    run = execute(suite, out=out, device="cpu", executor=executor, executor_options=options, metrics=False)
    wall = time.perf_counter() - t0
    with RunStore.open(run.run_dir) as store:
        created = sorted(c["created_at"] for c in store.cells())
        generation = store.get_meta("generation_s")
    return {"wall_s": wall, "generation_s": generation, "n_cells": len(created),
            "per_cell_ms": (created[-1] - created[0]) / (len(created) - 1) * 1000.0,
            "pngs": {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "images").rglob("*.png")}}


def round_trip_ms(calls: int = 200) -> float:
    """The median round trip of one call to a warm actor (the driver's cost per result batch, at least)."""
    import ray

    from t2ibench.harness.ray_executor import ShardRunner
    from t2ibench.suites import Timing

    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    try:
        actor = ray.remote(ShardRunner).options(num_cpus=1).remote("cpu", Timing(), False, 1, {})
        ray.get(actor.describe.remote())
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            ray.get(actor.describe.remote())
            times.append((time.perf_counter() - t0) * 1000.0)
        return statistics.median(times)
    finally:
        ray.shutdown()


def png_costs_ms(size: int = 1024, repeats: int = 10) -> tuple[float, float, int]:
    """For one ``size``² image of noise (the worst case for PNG): the actor's encoding, and the driver's
    atomic write with its sha256 (median ms), and the PNG's bytes."""
    import numpy as np

    from t2ibench.store import encode_png, write_png_atomic

    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    encode, write = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t0 = time.perf_counter()
            data = encode_png(pixels)
            t1 = time.perf_counter()
            write_png_atomic(Path(tmp) / f"{i}.png", data)
            write.append((time.perf_counter() - t1) * 1000.0)
            encode.append((t1 - t0) * 1000.0)
    return statistics.median(encode), statistics.median(write), len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="ABAB pairs (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local run and of the actor")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    import torch

    from t2ibench.suites import load_suite

    torch.set_num_threads(args.threads)
    cpus = os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE, sort_keys=False))
    suite = load_suite(root / "suite.yaml")
    one_run(suite, root / "warm", "local", {})  # imports and first model load, outside the figures
    print(f"load average before: {os.getloadavg()}", flush=True)
    runs: dict[str, list[dict]] = {"local": [], "ray-1x": [], "ray-per-cpu": []}
    one_actor = {"max_actors": "1", "cpus_per_actor": str(args.threads)}
    for i in range(args.pairs):
        for name, executor, options in (("local", "local", {}), ("ray-1x", "ray", one_actor)):
            runs[name].append(one_run(suite, root / f"{name}-{i}", executor, options))
            r = runs[name][-1]
            print(f"{name:12} wall {r['wall_s']:6.2f} s  generation {r['generation_s']:6.2f} s  "
                  f"per cell {r['per_cell_ms']:6.1f} ms", flush=True)
    runs["ray-per-cpu"].append(one_run(suite, root / "ray-per-cpu", "ray", {"cpus_per_actor": "1"}))
    r = runs["ray-per-cpu"][-1]
    print(f"{'ray-per-cpu':12} wall {r['wall_s']:6.2f} s  generation {r['generation_s']:6.2f} s  "
          f"per cell {r['per_cell_ms']:6.1f} ms", flush=True)
    identical = all(r["pngs"] == runs["local"][0]["pngs"] for r in runs["local"] + runs["ray-1x"])
    rtt = round_trip_ms()
    encode_ms, write_ms, png_bytes = png_costs_ms()
    print(f"load average after: {os.getloadavg()}")

    def mean(name: str, key: str) -> float:
        return statistics.mean(r[key] for r in runs[name])

    n = runs["local"][0]["n_cells"]
    summary = {
        "cells": n, "cpus": cpus, "threads": args.threads, "pairs": args.pairs,
        "identical_pngs_local_vs_ray_1x": identical,
        "actor_call_round_trip_ms": rtt, "png_1024_encode_ms_on_actor": encode_ms,
        "png_1024_write_ms_on_driver": write_ms, "png_1024_bytes": png_bytes,
        **{f"{name}_{key}": mean(name, key) for name in runs for key in ("wall_s", "generation_s", "per_cell_ms")},
    }
    summary["wall_ratio"] = summary["ray-1x_wall_s"] / summary["local_wall_s"]
    summary["generation_ratio"] = summary["ray-1x_generation_s"] / summary["local_generation_s"]
    summary["overhead_per_cell_ms_from_wall"] = (summary["ray-1x_wall_s"] - summary["local_wall_s"]) / n * 1000
    summary["overhead_per_cell_ms_steady"] = summary["ray-1x_per_cell_ms"] - summary["local_per_cell_ms"]
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": {
            k: [{f: v for f, v in r.items() if f != "pngs"} for r in rs] for k, rs in runs.items()}}, indent=2))


if __name__ == "__main__":
    main()
