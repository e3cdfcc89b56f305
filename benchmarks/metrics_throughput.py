"""Throughput of the quality metrics' feature extraction on CPU, and what the feature cache saves:
``python benchmarks/metrics_throughput.py [--weights random] [--images 64] [--size 512] [--json out.json]``.

For each metric (CLIP score as the yardstick, then HPSv2, PickScore, ImageReward, the aesthetic score and
FD-DINOv2), in one process, one after the other (``--repeats R`` cycles through them R times, so a slow
phase of the machine does not land on one metric alone):

- ``load_s``: building the network (untimed in the throughput);
- ``first``: a full scoring of ``--images`` images (``--size``² PNGs, 3 seeds per prompt) into an empty
  feature cache, at ``--batch-size`` (16) on the CPU: decoding, preprocessing, the image forward, the
  prompt encodings and the score; ``images_per_s`` = images / ``first``. FD-DINOv2 is scored against a
  folder holding the same images, so each image runs through the network once, as for the others;
- ``second``: the same scoring again with the now warm cache; ``second / first`` must stay ≤ 5% for the
  new metrics (exit 1 otherwise; CLIP score re-encodes its prompts on each scoring, so it is shown only).

``--weights random`` (the default) uses the real full-size architectures with random weights (what the
figures are about: cost, not quality); ``random:tiny`` runs the narrow test models (a smoke run of this
script). Nothing here downloads. Do not commit numbers from a machine that was busy with other work.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NEW = ("hpsv2", "pickscore", "image_reward", "aesthetic", "fd_dinov2")
CACHE_BUDGET = 0.05


def make_images(folder: Path, n: int, size: int, seeds: int = 3) -> list:
    from PIL import Image

    from t2ibench.metrics.evaluate import ImageRecord

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        low = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
        path = folder / f"{i:04d}.png"
        Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC).save(path)
        prompt_id = i // seeds
        records.append(ImageRecord("a", f"p{prompt_id}", f"a photo of object number {prompt_id}, studio light",
                                   i % seeds, path))
    return records


def options(metric: str, weights: str, folder: Path) -> dict:
    if metric == "clip_score":
        return {"model": "random:ViT-B-32"} if weights.startswith("random") else {}
    opts = {"weights": weights} if weights != "real" else {}
    if metric == "fd_dinov2":
        opts["against"] = str(folder)
    return opts


def _clear_model_caches() -> None:
    import importlib

    for name in ("hpsv2", "pickscore", "image_reward", "aesthetic", "fd_dinov2", "networks"):
        module = importlib.import_module(f"t2ibench.metrics.{name}")
        for attr in vars(module).values():
            if hasattr(attr, "cache_clear"):
                attr.cache_clear()
    gc.collect()


def measure(metric: str, weights: str, records: list, folder: Path, batch_size: int) -> dict:
    from t2ibench.metrics.evaluate import evaluate

    opts = {metric: options(metric, weights, folder)}
    one = records[:2]
    t0 = time.perf_counter()
    evaluate(opts, one, None, cache_dir=None, ci=False, batch_size=batch_size, num_workers=0)  # load + warm up
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        rows = evaluate(opts, records, None, cache_dir=Path(cache), ci=False, batch_size=batch_size, num_workers=0)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = evaluate(opts, records, None, cache_dir=Path(cache), ci=False, batch_size=batch_size, num_workers=0)
        second = time.perf_counter() - t0
    assert [r.value for r in rows] == [r.value for r in again], f"{metric}: the cached rerun changed the value"
    return {"metric": metric, "load_s": round(load_s, 3), "first_s": round(first, 3), "second_s": round(second, 4),
            "images_per_s": round(len(records) / first, 3), "cache_ratio": round(second / first, 4),
            "cache_ok": second / first <= CACHE_BUDGET, "random_weights": rows[0].random_weights}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="random", help="random (full size) | random:tiny (smoke) | real")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=512, help="side of the square test images")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--metrics", default=",".join(("clip_score", *NEW)))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("T2IBENCH_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        records = make_images(Path(tmp) / "images", args.images, args.size)
        for rep in range(args.repeats):
            for metric in metrics:
                r = measure(metric, args.weights, records, Path(tmp) / "images", args.batch_size)
                r["repeat"] = rep
                results.append(r)
                print(f"{metric:13} load {r['load_s']:8.2f} s   {r['images_per_s']:9.2f} images/s   "
                      f"cached rerun {100 * r['cache_ratio']:6.2f}% of the first "
                      f"({'ok' if r['cache_ok'] else 'OVER 5%'})", flush=True)
                _clear_model_caches()
    out = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                       "python": sys.version.split()[0]},
           "settings": {"weights": args.weights, "images": args.images, "size": args.size,
                        "batch_size": args.batch_size, "repeats": args.repeats},
           "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(r["cache_ok"] for r in results if r["metric"] in NEW) else 1


if __name__ == "__main__":
    raise SystemExit(main())
