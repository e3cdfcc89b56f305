"""Latency/VRAM sweep of the full-size random presets on a GPU, through ``t2ibench.run``.

Runs ``random:sd15`` (512²) and ``random:sdxl`` (1024²) over precision × attention × compile × batch
size, plus the huggingface/diffusion-fast recipe (bf16, SDPA, ``compile: max-autotune``, channels_last),
and prints a Markdown table (config, latency p50, images/s, peak VRAM) to commit as
``benchmarks/results/<gpu-name>.md`` (``--write``). Random weights: latency and memory only.

    python benchmarks/gpu_sweep.py                     # both presets, 30 steps, on CUDA
    python benchmarks/gpu_sweep.py --model random:tiny-sd --device cpu --quick   # a smoke test of the script
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

RESULTS_DIR = Path(__file__).parent / "results"
DEFAULT_MODELS = ("random:sd15", "random:sdxl")
SIZES = {"random:sd15": 512, "random:sdxl": 1024}
PROMPTS = ["a photo of an astronaut riding a horse on mars", "a red cube on a wooden table",
           "a lighthouse at dusk, oil painting", "a cat wearing sunglasses"]
DIFFUSION_FAST = {"name": "diffusion-fast", "precision": "bf16", "attention": "sdpa", "channels_last": True,
                  "compile": {"mode": "max-autotune"}, "batch_size": 1}


def sweep_suite(model: str, *, steps: int, quick: bool) -> dict:
    """The suite for one model: the full matrix, or (quick) a few cheap configs that need no GPU."""
    size = SIZES.get(model, 64)
    if quick:
        matrix = {"precision": ["fp32", "bf16"], "attention": ["math", "sdpa"], "batch_size": [1, 2]}
        include, prompts, timing = [], PROMPTS[:2], {"warmup": 1, "repeats": 1}
    else:
        matrix = {"precision": ["fp32", "fp16", "bf16"], "attention": ["math", "sdpa"], "compile": [False, True],
                  "batch_size": [1, 4]}
        include, prompts, timing = [DIFFUSION_FAST], PROMPTS, {"warmup": 1, "repeats": 3}
    name = re.sub(r"[^a-z0-9_-]+", "-", f"gpu-sweep-{model.lower()}")
    return {"name": name, "model": model, "prompts": prompts, "seeds": [0],
            "defaults": {"steps": steps, "width": size, "height": size, "guidance_scale": 7.5},
            "matrix": matrix, "include": include, "timing": timing}


def _figure(value, fmt: str) -> str:
    import math

    return "—" if value is None or math.isnan(value) else format(value, fmt)


def markdown_table(model: str, results) -> str:
    lines = [f"### {model}", "", "| config | latency p50 (ms) | images/s | peak VRAM (MB) | status |",
             "|---|---:|---:|---:|---|"]
    for _, r in results.iterrows():
        status = r["status"] if r["status"] != "skipped" else f"skipped: {r['reason']}"
        lines.append(f"| {r['config']} | {_figure(r['latency_ms_p50'], '.1f')} | {_figure(r['images_per_s'], '.3f')} "
                     f"| {_figure(r['peak_vram_mb'], '.0f')} | {status} |")
    return "\n".join(lines)


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def header(device: str, steps: int) -> str:
    import diffusers
    import torch

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return (f"# t2ibench GPU sweep: {device_name(device)}\n\n{stamp}; torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, diffusers {diffusers.__version__}; {steps} steps, guidance 7.5, "
            "random weights (latency and memory only); batch latency is per call, images/s counts every image.\n")


def main(argv: list[str] | None = None) -> int:
    import t2ibench

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a model spec (repeatable); default: random:sd15, random:sdxl")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a few cheap configs, 2 steps (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("t2ibench-runs"), help="folder for the run directories")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/<gpu-name>.md")
    args = parser.parse_args(argv)
    steps = 2 if args.quick else args.steps
    sections = [header(args.device, steps)]
    for model in args.model or DEFAULT_MODELS:
        suite = sweep_suite(model, steps=steps, quick=args.quick)
        path = args.out / f"{suite['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        run = t2ibench.run(path, out=args.out / suite["name"], device=args.device, metrics=False, fresh=True)
        sections.append(markdown_table(model, run.results()))
    text = "\n\n".join(sections) + "\n"
    print(text)
    if args.write:
        target = RESULTS_DIR / f"{re.sub(r'[^a-z0-9]+', '-', device_name(args.device).lower()).strip('-')}.md"
        target.write_text(text)
        print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
