"""The deployment knobs on a GPU: bf16 against torchao int8dq / float8dq, a step cache and regional compile.

Runs ``random:sdxl`` and ``random:flux-dev`` at 1024², batch 1, through ``t2ibench.run`` (one suite per
model), and prints latency p50, peak VRAM, compile time, cache hit rate and what was applied, beside the
published anchors. Random weights: latency and memory only, and cache hit rates are not those of a
trained model (a cache skips by how much the activations change, which random weights set). Sized for
about 8 minutes on one H100 (1 prompt × 1 seed, 1 warm-up call per config).

    python benchmarks/knobs_gpu.py --write        # on CUDA; writes benchmarks/results/<gpu>-knobs.md
    python benchmarks/knobs_gpu.py --tiny --device cpu   # a smoke test of the script on tiny pipelines
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from gpu_sweep import RESULTS_DIR, _figure, _short, call_timings  # noqa: E402

MODELS = {  # model → (size, steps, guidance, the cache its family supports)
    "random:sdxl": (1024, 30, 5.0, {"method": "deepcache", "cache_interval": 3}),
    "random:flux-dev": (1024, 28, 3.5, {"method": "first_block", "threshold": 0.08}),
}
TINY = {"random:sdxl": "random:tiny-sdxl", "random:flux-dev": "random:tiny-flux"}
CONFIGS = [
    {"name": "bf16"},
    {"name": "int8dq", "quantize": "int8dq"},
    {"name": "float8dq", "quantize": "float8dq"},
    {"name": "first_block", "cache": {"method": "first_block", "threshold": 0.08}},
    {"name": "regional-compile", "compile": {"regional": True}},
    {"name": "whole-compile", "compile": True},
]
ANCHORS = """Published anchors (trained weights, other software versions; for orientation, not a like-for-like check):
- diffusers-torchao, FLUX.1-dev, one H100, 1024², 28 steps: 6.43 s in bf16; 3.48 s with torchao quantization plus
  `torch.compile`.
- diffusers' caching docs: first-block cache and TaylorSeer report about 1.5–2× on FLUX.1-dev at their default
  thresholds, with trained weights (the skips depend on how the activations of a trained model change)."""


def suite(model: str, spec: str, tiny: bool) -> dict:
    size, steps, guidance, family_cache = MODELS[model]
    if tiny:
        size, steps = 64, 2
    configs = [dict(c) for c in CONFIGS]
    if family_cache["method"] != "first_block":  # the UNet's own cache beside the (skipped) transformer one
        configs.append({"name": family_cache["method"], "cache": family_cache})
    return {"name": re.sub(r"[^a-z0-9_-]+", "-", f"knobs-{model.lower()}"), "model": spec,
            "prompts": ["a photo of an astronaut riding a horse on mars"], "seeds": [0],
            "defaults": {"steps": steps, "width": size, "height": size, "guidance_scale": guidance,
                         "precision": "bf16"},
            "include": configs, "timing": {"warmup": 1, "repeats": 3}}


def table(model: str, run) -> str:
    results, timings = run.results(), call_timings(run.run_dir)
    base = timings.get(results.loc[results["config"] == "bf16", "config_id"].iloc[0], {}).get("p50")
    lines = [f"### {model}", "", "| config | latency p50 (ms) | × bf16 | peak VRAM (MB) | compile (s) | load (s) "
             "| cache hit rate | status | applied |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for _, r in results.iterrows():
        p50 = timings.get(r["config_id"], {}).get("p50")
        status = f"skipped: {r['reason']}" if r["status"] == "skipped" else r["status"]
        compile_s = r["compile_ms"] / 1000.0 if r["compile_ms"] is not None else None
        applied = json.loads(r["applied"] or "{}")
        shown = {k: v for k, v in applied.items() if k in ("quantize", "cache", "compiled_regions")}
        lines.append(f"| {r['config']} | {_figure(p50, '.1f')} | {_figure(p50 / base if p50 and base else None, '.3f')} "
                     f"| {_figure(r['peak_vram_mb'], '.0f')} | {_figure(compile_s, '.1f')} "
                     f"| {_figure(r['load_ms'] / 1000.0 if r['load_ms'] else None, '.1f')} "
                     f"| {_figure(r['cache_hit_rate'], '.3f')} | {status} | `{json.dumps(shown)[:160]}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import t2ibench

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny pipelines at 64², 2 steps (smoke test)")
    parser.add_argument("--model", action="append", choices=list(MODELS), help="default: both")
    parser.add_argument("--out", type=Path, default=Path("t2ibench-runs"))
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/<gpu-name>-knobs.md")
    args = parser.parse_args(argv)
    sections: list[str] = []
    for model in args.model or list(MODELS):
        spec = TINY[model] if args.tiny else model
        data = suite(model, spec, args.tiny)
        path = args.out / f"{data['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        run = t2ibench.run(path, out=args.out / data["name"], device=args.device, metrics=False)
        env = json.loads((run.run_dir / "manifest.json").read_text())["environment"]
        if not sections:
            sections.append(f"# t2ibench knobs on {env.get('gpu') or env.get('cpu')}\n\ntorch {env.get('torch')}, "
                            f"CUDA {env.get('cuda')}, diffusers {env.get('diffusers')}, t2ibench commit "
                            f"{_short(env.get('t2ibench_git_commit'))}; bf16, batch 1, 1 prompt × 1 seed, 1 warm-up "
                            "and 3 timed repeats per config; random weights (latency and memory only; cache hit "
                            "rates are not a trained model's).\n\n" + ANCHORS)
        sections.append(table(spec, run))
        if args.write:  # after each model: a run cut short keeps what it measured
            name = re.sub(r"[^a-z0-9]+", "-", (env.get("gpu") or "cpu").lower()).strip("-")
            (RESULTS_DIR / f"{name}-knobs.md").write_text("\n\n".join(sections) + "\n")
    print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
