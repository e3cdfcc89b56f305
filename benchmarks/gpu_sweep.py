"""Latency/VRAM sweep of the full-size random presets on a GPU, through ``t2ibench.run``.

Runs ``random:sd15`` (512²) and ``random:sdxl`` (1024²) over precision × attention × batch size (fp32 at
batch 1 only), then ``torch.compile`` (default mode) on bf16 + SDPA at both batch sizes, then the
huggingface/diffusion-fast recipe (bf16, SDPA, ``compile: max-autotune``, channels_last, batch 1). Prints a
Markdown table per model (latency p50 per call, images/s, peak VRAM, per-step time, warm-up incl. compile,
compile, recompiles) and, for
SDXL, the latency ratios beside diffusion-fast's published A100 ratios. ``--write`` saves the tables as
``benchmarks/results/<gpu-name>.md`` after each model. Random weights: latency and memory only.

    python benchmarks/gpu_sweep.py --write                   # both presets, 30 steps, on CUDA
    python benchmarks/gpu_sweep.py --tables-from t2ibench-runs  # tables again from finished run dirs
    python benchmarks/gpu_sweep.py --model random:tiny-sd --device cpu --quick   # a smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import yaml

RESULTS_DIR = Path(__file__).parent / "results"
DEFAULT_MODELS = ("random:sd15", "random:sdxl")
SIZES = {"random:sd15": 512, "random:sdxl": 1024}
PROMPTS = ["a photo of an astronaut riding a horse on mars", "a red cube on a wooden table",
           "a lighthouse at dusk, oil painting", "a cat wearing sunglasses"]
COMPILED = [{"name": f"bf16-sdpa-compile-b{b}", "precision": "bf16", "attention": "sdpa", "compile": True,
             "batch_size": b} for b in (1, 4)]
DIFFUSION_FAST = {"name": "diffusion-fast", "precision": "bf16", "attention": "sdpa", "channels_last": True,
                  "compile": {"mode": "max-autotune"}, "batch_size": 1}
# huggingface/diffusion-fast, SDXL 1024², 30 steps, batch 1, A100 (seconds); t2ibench config for each row
ANCHORS = [("fp32, without SDPA", 7.36, "precision=fp32 attention=math batch_size=1"),
           ("bf16", 4.63, "precision=bf16 attention=math batch_size=1"),
           ("bf16 + SDPA", 3.31, "precision=bf16 attention=sdpa batch_size=1"),
           ("+ compile max-autotune, channels_last", 2.54, "diffusion-fast")]


def suite_name(model: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", f"gpu-sweep-{model.lower()}")


def sweep_suite(model: str, *, steps: int, quick: bool) -> dict:
    """The suite for one model: the full sweep, or (quick) a few cheap configs that need no GPU."""
    size = SIZES.get(model, 64)
    matrix = {"precision": ["fp32", "fp16", "bf16"], "attention": ["math", "sdpa"], "batch_size": [1, 4]}
    include, exclude = [*COMPILED, DIFFUSION_FAST], [{"precision": "fp32", "batch_size": 4}]  # fits a 30-min lease
    if quick:
        matrix = {"precision": ["fp32", "bf16"], "attention": ["math", "sdpa"], "batch_size": [1, 2]}
        include, exclude = [], []
    return {"name": suite_name(model), "model": model, "prompts": PROMPTS[:2] if quick else PROMPTS, "seeds": [0],
            "defaults": {"steps": steps, "width": size, "height": size, "guidance_scale": 7.5},
            "matrix": matrix, "exclude": exclude, "include": include, "timing": {"warmup": 1, "repeats": 1}}


def _figure(value, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def call_timings(run_dir: Path) -> dict[str, dict]:
    """Per config: latency p50/mean over its timed calls and the mean step time.

    Calls whose images came out non-finite (status ``nan``: random weights in fp16 can overflow) are
    timed like the others here: the sweep measures speed, and the status column says so.
    """
    import numpy as np

    from t2ibench.store import RunStore
    from t2ibench.store import cell_records

    with RunStore.open(run_dir) as store:
        records = cell_records(store)
    calls: dict[str, dict[int, dict]] = {}
    for c in records:
        if c["status"] in ("ok", "nan") and c["latency_ms"] is not None:
            calls.setdefault(c["config_id"], {})[c["call_index"]] = c
    return {config_id: {"p50": float(np.median([c["latency_ms"] for c in by_call.values()])),
                        "mean": float(np.mean([c["latency_ms"] for c in by_call.values()])),
                        "step": float(np.mean([x for c in by_call.values() for x in c["step_ms"]] or [math.nan]))}
            for config_id, by_call in calls.items()}


def markdown_table(model: str, results, timings: dict[str, dict]) -> str:
    lines = [f"### {model}", "",
             "| config | latency p50 (ms) | images/s | peak VRAM (MB) | step (ms) | warm-up incl. compile (s) "
             "| compile (s) | recompiles | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in results.iterrows():
        status = f"skipped: {r['reason']}" if r["status"] == "skipped" else r["status"]
        if r["n_nan"]:
            status += f" ({r['n_nan']} of {r['n_nan'] + r['n_ok']} images non-finite: random weights)"
        t = timings.get(r["config_id"], {})
        images_per_s = r["batch_size"] * 1000.0 / t["mean"] if t else None
        warmup, compiling = (r[k] / 1000.0 if r[k] is not None else None for k in ("warmup_ms", "compile_ms"))
        lines.append(f"| {r['config']} | {_figure(t.get('p50'), '.1f')} | {_figure(images_per_s, '.3f')} "
                     f"| {_figure(r['peak_vram_mb'], '.0f')} | {_figure(t.get('step'), '.1f')} "
                     f"| {_figure(warmup, '.1f')} | {_figure(compiling, '.1f')} | {_figure(r['recompiles'], '.0f')} | {status} |")
    return "\n".join(lines)


def anchor_table(results, timings: dict[str, dict]) -> str:
    """SDXL latency ratios (to fp32 without SDPA) beside diffusion-fast's A100 ratios."""
    by_config = {r["config"]: timings.get(r["config_id"], {}).get("p50", math.nan) for _, r in results.iterrows()}
    base = by_config.get(ANCHORS[0][2], math.nan)
    lines = ["### random:sdxl against huggingface/diffusion-fast (A100, published)", "",
             "| setting | diffusion-fast (s) | ratio | t2ibench config | t2ibench (s) | ratio |",
             "|---|---:|---:|---|---:|---:|"]
    for label, seconds, config in ANCHORS:
        ours = by_config.get(config, math.nan) / 1000.0
        lines.append(f"| {label} | {seconds:.2f} | {seconds / ANCHORS[0][1]:.3f} | {config} | {_figure(ours, '.2f')} "
                     f"| {_figure(ours * 1000.0 / base, '.3f')} |")
    return "\n".join(lines)


def model_sections(model: str, run) -> list[str]:
    results, timings = run.results(), call_timings(run.run_dir)
    sections = [markdown_table(model, results, timings)]
    if model == "random:sdxl":
        sections.append(anchor_table(results, timings))
    return sections


def header(manifest: dict, steps: int) -> str:
    """The file's header, from the run's manifest: when it was measured, and on what."""
    env = manifest["environment"]
    device = env.get("gpu") or env.get("cpu") or env.get("device")
    return (f"# t2ibench GPU sweep: {device}\n\n{manifest['updated_at'][:10]}; torch {env.get('torch')}, "
            f"CUDA {env.get('cuda')}, driver {env.get('driver')}, diffusers {env.get('diffusers')}, "
            f"t2ibench commit {_short(env.get('t2ibench_git_commit'))}; {steps} steps, guidance 7.5, "
            "4 prompts × 1 seed, 1 warm-up call per config, then each batch timed once; random weights "
            "(latency and memory only). Latency is per call (a batch-4 call makes 4 images); images/s counts "
            "every image; peak VRAM is `torch.cuda.max_memory_allocated` over the config's calls; warm-up "
            "includes `torch.compile` and is never counted in latency.\n")


def _short(commit: str | None) -> str:
    return "unknown" if not commit else commit[:12] + (" with local changes" if commit.endswith("-dirty") else "")


def write(text: str, env: dict) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = env.get("gpu") or "cpu"
    target = RESULTS_DIR / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.md"
    target.write_text(text)
    print(f"wrote {target}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import t2ibench

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a model spec (repeatable); default: random:sd15, random:sdxl")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a few cheap configs, 2 steps (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("t2ibench-runs"), help="folder for the run directories")
    parser.add_argument("--tables-from", type=Path, metavar="FOLDER",
                        help="no run: print the tables of the sweep's run directories already in FOLDER")
    parser.add_argument("--fresh", action="store_true",
                        help="start the runs over (default: resume the run directories in --out)")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/<gpu-name>.md")
    args = parser.parse_args(argv)
    steps = 2 if args.quick else args.steps
    sections: list[str] = []
    for model in args.model or DEFAULT_MODELS:
        if args.tables_from:
            run = t2ibench.open_run(args.tables_from / suite_name(model))
        else:
            suite = sweep_suite(model, steps=steps, quick=args.quick)
            path = args.out / f"{suite['name']}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(suite, sort_keys=False))
            run = t2ibench.run(path, out=args.out / suite["name"], device=args.device, metrics=False,
                               fresh=args.fresh)
        manifest = json.loads((run.run_dir / "manifest.json").read_text())
        sections = sections or [header(manifest, steps)]
        sections += model_sections(model, run)
        if args.write:  # after each model: a sweep cut short keeps what it measured
            write("\n\n".join(sections) + "\n", manifest["environment"])
    print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
