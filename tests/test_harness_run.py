"""End-to-end runs on random:tiny-sd through the API and the CLI: columns, timing, determinism."""

from __future__ import annotations

import csv
import json
import math

import torch

import t2ibench
from t2ibench.store import SCHEMA_VERSION
from t2ibench.cli import main
from t2ibench.backends.torch import engine as torch_backend

CELL_COLUMNS = ["config_id", "config", "prompt_id", "prompt", "seed", "status", "error", "latency_ms", "encode_ms",
                "denoise_ms", "decode_ms", "step_ms", "peak_vram_mb", "peak_rss_mb", "image_path"]
RESULT_FIGURES = ["n_ok", "n_failed", "latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s",
                  "peak_vram_mb", "peak_rss_mb"]


def test_run_writes_contract_files(write_suite, tmp_path):
    path = write_suite(matrix={"scheduler": ["euler", "ddim"]}, include=[{"name": "fast", "steps": 2}],
                       objectives={"latency_ms_p50": "min"})
    out = tmp_path / "run"
    run = t2ibench.run(t2ibench.load_suite(path), out=out, device="cpu")
    assert (out / "run.sqlite").is_file() and (out / "report.md").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION == 3 and manifest["status"] == "complete"
    assert manifest["environment"]["torch"] == torch.__version__ and manifest["environment"]["diffusers"]
    assert len(manifest["suite"]["configs"]) == 3

    with open(out / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[: len(CELL_COLUMNS)] == CELL_COLUMNS
    assert len(rows) == 3 * 3 * 2 and all(r["status"] == "ok" for r in rows)
    assert all((out / r["image_path"]).is_file() for r in rows)
    assert {r["config"] for r in rows} == {"scheduler=euler", "scheduler=ddim", "fast"}

    results = run.results()
    cols = list(results.columns)
    assert cols[:2] == ["config_id", "config"]
    assert cols.index("n_ok") < cols.index("peak_rss_mb") and all(c in cols for c in RESULT_FIGURES + ["pareto"])
    assert set(results["n_ok"]) == {6} and set(results["n_failed"]) == {0}
    fast = results.set_index("config").loc["fast"]
    assert fast["steps"] == 2 and fast["width"] == 64
    assert fast["peak_rss_mb"] > 50  # a real RSS reading, in MB
    assert math.isclose(fast["images_per_s"], 1000.0 / fast["latency_ms_mean"], rel_tol=1e-9)
    # one objective: exactly the fastest config is on the frontier
    assert results["pareto"].sum() == 1
    assert results.loc[results["pareto"], "latency_ms_p50"].iloc[0] == results["latency_ms_p50"].min()


def test_step_timing_partitions_every_call(write_suite, tmp_path):
    path = write_suite(matrix={"steps": [2, 5]}, seeds=[0, 1, 2])
    cells = t2ibench.run(path, out=tmp_path / "run", device="cpu").cells()
    assert len(cells) == 2 * 3 * 3
    for _, c in cells.iterrows():
        steps = json.loads(c["step_ms"])
        expected = 2 if c["config"] == "steps=2" else 5
        assert len(steps) == expected, "step_ms must be cleared at the start of every call"
        assert all(s > 0 for s in steps)
        assert math.isclose(c["encode_ms"] + c["denoise_ms"] + c["decode_ms"], c["latency_ms"], rel_tol=1e-6)
        assert math.isclose(sum(steps), c["denoise_ms"], rel_tol=1e-3)
        assert c["encode_ms"] > 0 and c["decode_ms"] > 0


def _image_bytes(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted((run_dir / "images").rglob("*.png"))}


def test_same_seed_gives_identical_png_bytes(write_suite, tmp_path):
    path = write_suite(matrix={"scheduler": ["euler_a", "ddim"]})
    a = t2ibench.run(path, out=tmp_path / "a", device="cpu")
    b = t2ibench.run(path, out=tmp_path / "b", device="cpu")
    bytes_a, bytes_b = _image_bytes(a.run_dir), _image_bytes(b.run_dir)
    assert len(bytes_a) == 2 * 3 * 2 and bytes_a == bytes_b
    # different seeds give different images
    images = list(bytes_a.values())
    assert len(set(images)) == len(images)


def test_initial_latents_are_paired_across_configs(write_suite, tmp_path, monkeypatch):
    seen: dict[tuple, list] = {}
    real = torch_backend.initial_latents

    def recording(seeds, shape, dtype):
        latents, gens = real(seeds, shape, dtype)
        seen.setdefault(tuple(seeds), []).append(latents.float().clone())
        return latents, gens

    monkeypatch.setattr(torch_backend, "initial_latents", recording)
    path = write_suite(matrix={"scheduler": ["euler", "dpmpp_2m"], "steps": [2, 3], "precision": ["fp32", "bf16"]},
                       timing={"warmup": 0, "repeats": 1})
    t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    assert {s for (s,) in seen} == {0, 1}
    for (seed,), draws in seen.items():
        assert len(draws) == 8 * 3  # 8 configs × 3 prompts
        fp32 = draws[0]
        for d in draws:  # bf16 configs get the same draw, rounded to bf16
            assert torch.equal(d, fp32) or torch.equal(d, fp32.to(torch.bfloat16).float())


def test_harness_image_equals_bare_diffusers_loop(write_suite, tmp_path):
    """The paired latents are exactly what diffusers draws from a CPU generator seeded with the seed."""
    import numpy as np
    from PIL import Image

    from t2ibench.backends.torch.random_models import tiny_sd

    path = write_suite(prompts=["a red cube on a table"], seeds=[7])
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cell = run.cells().iloc[0]
    ours = np.asarray(Image.open(run.run_dir / cell["image_path"]))
    pipe = tiny_sd()
    bare = pipe("a red cube on a table", num_inference_steps=3, guidance_scale=5.0, height=64, width=64,
                generator=torch.Generator("cpu").manual_seed(7), output_type="np").images[0]
    assert np.abs(ours.astype(int) - (bare * 255).round().astype(int)).max() <= 1


def test_cli_run_prints_summary_and_report(write_suite, tmp_path, capsys):
    path = write_suite()
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "report:" in out and "p50 ms" in out


def test_loads_once_per_load_key(write_suite, tmp_path, monkeypatch):
    from t2ibench.backends.torch.engine import TorchBackend

    loads = []
    real = TorchBackend.load
    monkeypatch.setattr(TorchBackend, "load", lambda self, model, knobs, device, **kw: loads.append(knobs.precision)
                        or real(self, model, knobs, device, **kw))
    path = write_suite(matrix={"precision": ["fp32", "bf16"], "scheduler": ["euler", "ddim", "unipc"]})
    t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    assert sorted(loads) == ["bf16", "fp32"]


def test_unrunnable_config_is_skipped_and_sweep_goes_on(write_suite, tmp_path):
    path = write_suite(matrix={"attention": ["sdpa", "flash"]})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("config")
    assert results.loc["attention=flash", "status"] == "skipped"
    assert "CUDA" in results.loc["attention=flash", "reason"]
    assert results.loc["attention=sdpa", "n_ok"] == 6
    cells = run.cells()
    assert set(cells[cells["config"] == "attention=flash"]["status"]) == {"skipped"}


def test_failed_cells_exit_1_and_are_retried_on_resume(write_suite, tmp_path, monkeypatch, capsys, fail_scheduler):
    fail_scheduler("ddim", "simulated device failure")
    path = write_suite(matrix={"scheduler": ["euler", "ddim"]},  # every ddim call fails, none skipped
                       timing={"warmup": 1, "repeats": 1, "max_consecutive_failures": 6})
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 1
    cells = t2ibench.open_run(out).cells()
    failed = cells[cells["status"] == "failed"]
    assert len(failed) == 6 and failed["error"].str.contains("simulated device failure").all()
    assert "6 cells failed" in capsys.readouterr().err
    monkeypatch.undo()  # the device works again: the resume retries the failed cells
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    assert set(t2ibench.open_run(out).cells()["status"]) == {"ok"}


def test_batches_share_a_call_and_count_images(write_suite, tmp_path):
    path = write_suite(defaults={"steps": 2, "width": 64, "height": 64, "batch_size": 2})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells = run.cells()
    assert len(cells) == 6 and set(cells["status"]) == {"ok"}
    assert cells.groupby("call_index")["latency_ms"].nunique().eq(1).all()
    r = run.results().iloc[0]
    assert math.isclose(r["images_per_s"], 2 * 1000.0 / r["latency_ms_mean"], rel_tol=1e-9)


def test_git_commit_says_when_the_code_differs_from_it(tmp_path):
    import subprocess

    from t2ibench.harness.environment import _git_commit

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = git("rev-parse", "HEAD").strip()
    assert _git_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked files are not the measured code\n")
    assert _git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert _git_commit(tmp_path) == head + "-dirty"
    assert _git_commit(tmp_path / "missing") is None
