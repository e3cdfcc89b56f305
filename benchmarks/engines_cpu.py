"""Engines side by side on one CPU sitting: ``python benchmarks/engines_cpu.py [--write]``.

One suite on a random-weight SD 1.5 at full size (``random:sd15``: the 860M-parameter UNet, its VAE and
CLIP ViT-L/14; small images so that a sitting fits in minutes, yet well over 0.5 s a call), run through
``t2ibench.run`` with one config per engine: eager torch, ``torch.compile`` (inductor), OpenVINO IR in f32,
at the CPU plugin's default precision, and with int8 weights (nncf), and onnxruntime (CPU provider).
Every config generates the same prompts and seeds (paired noise), so each engine's images are compared
pixel by pixel with eager torch's: mean and max absolute difference in 0..255 units.

Reported per engine: latency p50 per call and its ratio to eager torch measured in the same sitting,
export (``export_ms``: near zero when the export cache already held the networks) and load time, and the
pixel differences. The configs run one after another in one process; run nothing else meanwhile. The
weights are random: the figures are latency only, and say nothing about image quality.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ENGINES = [  # (config name, knobs)
    ("torch-eager", {}),
    ("torch-inductor", {"compile": True}),
    ("openvino-f32", {"backend": "openvino", "inference_precision": "f32"}),
    ("openvino-default", {"backend": "openvino"}),
    ("openvino-int8-weights", {"backend": "openvino", "weight_compression": "int8"}),
    ("onnxruntime-cpu", {"backend": "onnxruntime"}),
]


def suite(size: int, steps: int, repeats: int) -> dict:
    return {
        "name": "engines-cpu", "model": "random:sd15",
        "prompts": ["a red cube on a table", "a lighthouse at dusk"], "seeds": [0],
        "defaults": {"steps": steps, "width": size, "height": size, "guidance_scale": 7.5},
        "include": [{"name": name, **knobs} for name, knobs in ENGINES],
        "timing": {"warmup": 1, "repeats": repeats},
    }


def pixel_differences(run_dir: Path, results) -> dict[str, tuple[float, float]]:
    from PIL import Image

    from t2ibench.store import RunStore

    with RunStore.open(run_dir) as store:
        cells = [c for c in store.cells() if c["status"] == "ok"]
    by_config: dict[str, dict] = {}
    for c in cells:
        by_config.setdefault(c["config_id"], {})[(c["prompt_id"], c["seed"])] = run_dir / c["image_path"]
    ids = dict(zip(results["config"], results["config_id"]))
    eager = by_config.get(ids["torch-eager"], {})
    out = {}
    for name, cid in ids.items():
        diffs = [np.abs(np.asarray(Image.open(path), np.int16) - np.asarray(Image.open(eager[key]), np.int16))
                 for key, path in by_config.get(cid, {}).items() if key in eager]
        out[name] = (float(np.mean([d.mean() for d in diffs])), float(max(d.max() for d in diffs))) if diffs \
            else (float("nan"), float("nan"))
    return out


def table(results, diffs: dict, size: int, steps: int) -> str:
    eager = float(results.set_index("config").loc["torch-eager", "latency_ms_p50"])
    lines = [f"`random:sd15`, {size}², {steps} steps, guidance 7.5 (CFG: batch 2 in the UNet), 2 prompts × 1 seed, "
             "1 warm-up call, then the timed calls.", "",
             "| engine | status | latency p50 (ms/call) | ratio to eager | export (ms) | mean / max pixel diff to eager |",
             "|---|---|---|---|---|---|"]
    for _, row in results.iterrows():
        p50 = row["latency_ms_p50"]
        status = row["status"] if row["status"] == "done" else f"{row['status']}: {row.get('reason', '')}"
        ratio = f"{p50 / eager:.2f}" if p50 == p50 else "–"
        export = row.get("export_ms")
        mean, mx = diffs.get(row["config"], (float("nan"), float("nan")))
        lines.append(f"| {row['config']} | {status} | {p50:.0f} | {ratio} | "
                     f"{'–' if export != export or export is None else f'{export:.0f}'} | "
                     f"{'–' if mean != mean else f'{mean:.3f} / {mx:.0f}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/engines-cpu-2core.{md,json}")
    args = parser.parse_args()

    import t2ibench

    root = args.out or Path(tempfile.mkdtemp(prefix="t2ibench-engines-"))
    root.mkdir(parents=True, exist_ok=True)
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(suite(args.size, args.steps, args.repeats), sort_keys=False))
    t0 = time.perf_counter()
    run = t2ibench.run(path, out=root / "run", device="cpu", metrics=False)
    wall = time.perf_counter() - t0
    results = run.results()
    diffs = pixel_differences(run.run_dir, results)
    import torch

    header = (f"# Engines side by side, CPU ({platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} torch threads)\n\n"
              f"`python benchmarks/engines_cpu.py --write`; torch {torch.__version__}, python "
              f"{sys.version.split()[0]}; the whole sitting took {wall:.0f} s.\n")
    text = header + "\n" + table(results, diffs, args.size, args.steps) + "\n"
    print(text)
    if args.write:
        out = Path(__file__).parent / "results"
        (out / "engines-cpu-2core.md").write_text(text)
        cols = [c for c in ("config", "status", "reason", "latency_ms_p50", "latency_ms_mean", "export_ms",
                            "applied") if c in results.columns]
        records = json.loads(results[cols].to_json(orient="records"))
        for r in records:
            r["pixel_diff_mean"], r["pixel_diff_max"] = diffs.get(r["config"], (None, None))
        (out / "engines-cpu-2core.json").write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
