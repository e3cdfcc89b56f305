"""Knobs that act on the calls: text-embedding caching, prompt text, batching, NaN images, unrunnable
combinations, and compile."""

from __future__ import annotations

import math
import time

import pytest

import t2ibench
from t2ibench.backends.torch.engine import TorchModel


def suite(write_suite, **overrides):
    return write_suite(**{"prompts": ["a red cube", "a lighthouse"], "seeds": [0, 1],
                          "timing": {"warmup": 1, "repeats": 1},
                          "defaults": {"steps": 2, "width": 64, "height": 64, "guidance_scale": 1.0}, **overrides})


def test_cached_text_embeddings_encode_each_prompt_once_per_load(write_suite, tmp_path, monkeypatch):
    from transformers import CLIPTextModel

    encoded: list[tuple[str, int]] = []  # (config, batch) per text encoder forward
    current = {"config": ""}
    real_forward, real_call = CLIPTextModel.forward, TorchModel._call
    delay_s = 0.03

    def slow_forward(self, input_ids, *args, **kwargs):  # a text encoder slow enough to see in encode_ms
        encoded.append((current["config"], input_ids.shape[0]))
        time.sleep(delay_s)
        return real_forward(self, input_ids, *args, **kwargs)

    def call(self, prompts, seeds, knobs):
        current["config"] = f"cache={knobs.cache_text_embeddings},steps={knobs.steps}"
        return real_call(self, prompts, seeds, knobs)

    monkeypatch.setattr(CLIPTextModel, "forward", slow_forward)
    monkeypatch.setattr(TorchModel, "_call", call)
    path = suite(write_suite, matrix={"cache_text_embeddings": [True, False], "steps": [2, 3]})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells = run.cells()
    assert set(cells["status"]) == {"ok"}
    per_config = {c: sum(1 for name, _ in encoded if name == c) for c, _ in encoded}
    # cached: two prompts, encoded once each for the whole load group (both configs, both seeds, warm-up)
    assert per_config["cache=True,steps=2"] + per_config.get("cache=True,steps=3", 0) == 2
    assert per_config["cache=False,steps=2"] == per_config["cache=False,steps=3"] == 1 + 4  # warm-up + 4 cells
    cached = cells[cells["config"].str.contains("cache_text_embeddings=True")]
    uncached = cells[cells["config"].str.contains("cache_text_embeddings=False")]
    assert (uncached["encode_ms"] >= delay_s * 1000).all()
    assert (cached["encode_ms"] < delay_s * 1000).sum() >= len(cached) - 1  # all but one prompt's first encode
    # the cached embeddings are the same: identical pixels
    for (_, a), (_, b) in zip(cached.sort_values(["prompt_id", "seed", "config"]).iterrows(),
                              uncached.sort_values(["prompt_id", "seed", "config"]).iterrows()):
        assert (run.run_dir / a["image_path"]).read_bytes() == (run.run_dir / b["image_path"]).read_bytes()


def test_prompt_suffix_and_negative_prompt_change_the_text_encoded(write_suite, tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    seen: list[tuple] = []
    real = StableDiffusionPipeline.encode_prompt

    def encode_prompt(self, prompt, device, num_images_per_prompt, do_cfg, negative_prompt=None, **kwargs):
        seen.append((tuple(prompt), tuple(negative_prompt) if negative_prompt else None))
        return real(self, prompt, device, num_images_per_prompt, do_cfg, negative_prompt, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "encode_prompt", encode_prompt)
    path = suite(write_suite, prompts=["a red cube"], seeds=[0], timing={"warmup": 0, "repeats": 1},
                 defaults={"steps": 2, "width": 64, "height": 64, "guidance_scale": 5.0},
                 include=[{"name": "suffix", "prompt_suffix": ", best quality"},
                          {"name": "negative", "negative_prompt": "blurry"}])
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    assert set(run.cells()["status"]) == {"ok"}
    assert sorted(seen, key=repr) == sorted([(("a red cube",), None), (("a red cube, best quality",), None),
                                             (("a red cube",), ("blurry",))], key=repr)
    assert len({p.read_bytes() for p in (run.run_dir / "images").rglob("*.png")}) == 3


def test_batch_size_batches_prompts_into_one_call(write_suite, tmp_path, monkeypatch):
    calls: list[list[str]] = []
    real = TorchModel._call
    monkeypatch.setattr(TorchModel, "_call", lambda self, prompts, seeds, knobs:
                        calls.append(list(prompts)) or real(self, prompts, seeds, knobs))
    path = suite(write_suite, matrix={"batch_size": [1, 2, 4]})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("batch_size")
    assert [len(c) for c in calls] == [1] * (1 + 4) + [2] * (1 + 2) + [4] * (1 + 1)  # warm-up + calls
    cells = run.cells()
    for size, group in cells.groupby("batch_size"):
        assert group.groupby("call_index")["latency_ms"].nunique().eq(1).all()  # one latency per call
        assert group["call_index"].nunique() == 4 // size
        r = results.loc[size]
        assert r["latency_ms_mean"] == pytest.approx(group.drop_duplicates("call_index")["latency_ms"].mean())
        assert r["images_per_s"] == pytest.approx(size * 1000.0 / r["latency_ms_mean"])


@pytest.mark.parametrize("fill, reason", [(float("nan"), "non-finite pixels"), (-1.0, "all-black image")])
def test_nan_or_black_images_are_status_nan(fill, reason, write_suite, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    real = AutoencoderKL.decode

    def decode(self, z, *args, **kwargs):  # poisons the decode of the guidance 3.0 config only
        out = real(self, z, *args, **kwargs)
        if poison["on"]:
            out[0].fill_(fill)  # a DecoderOutput or a tuple
        return out

    poison = {"on": False}
    real_call = TorchModel._call

    def call(self, prompts, seeds, knobs):
        poison["on"] = knobs.guidance_scale == 3.0
        return real_call(self, prompts, seeds, knobs)

    monkeypatch.setattr(AutoencoderKL, "decode", decode)
    monkeypatch.setattr(TorchModel, "_call", call)
    path = suite(write_suite, matrix={"guidance_scale": [1.0, 3.0]})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells = run.cells().set_index("config")
    bad, good = cells.loc["guidance_scale=3.0"], cells.loc["guidance_scale=1.0"]
    assert set(bad["status"]) == {"nan"} and set(bad["error"]) == {reason} and bad["image_path"].isna().all()
    assert set(good["status"]) == {"ok"}
    results = run.results().set_index("config")
    assert results.loc["guidance_scale=3.0", "n_ok"] == 0 and results.loc["guidance_scale=1.0", "n_ok"] == 4
    assert results.loc["guidance_scale=3.0", "n_nan"] == 4 and results.loc["guidance_scale=1.0", "n_failed"] == 0
    assert len(list((run.run_dir / "images").rglob("*.png"))) == 4  # no image of a NaN cell is scored
    manifest = (run.run_dir / "manifest.json").read_text()
    assert '"nan": 4' in manifest


def test_unrunnable_combinations_are_skipped_with_reasons(write_suite, tmp_path):
    include = [{"name": "tf32", "tf32": True}, {"name": "offload-model", "offload": "model"},
               {"name": "offload-seq", "offload": "sequential"}, {"name": "flash", "attention": "flash"},
               {"name": "sdpa-after", "guidance_scale": 2.0}]
    path = suite(write_suite, prompts=["a red cube"], seeds=[0], include=include)
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("config")
    reasons = {name: results.loc[name, "reason"] for name in results.index if results.loc[name, "status"] == "skipped"}
    assert set(reasons) == {"tf32", "offload-model", "offload-seq", "flash"}
    assert "tf32 needs a CUDA device" in reasons["tf32"]
    assert "offload 'model' needs a CUDA device" in reasons["offload-model"]
    assert "offload 'sequential' needs a CUDA device" in reasons["offload-seq"]
    assert results.loc["sdpa-after", "n_ok"] == results.loc["default", "n_ok"] == 1  # the sweep went on
    assert set(run.cells().set_index("config").loc[list(reasons), "status"]) == {"skipped"}


def test_no_sdpa_kernel_at_the_first_timed_call_skips_the_config(write_suite, tmp_path, monkeypatch):
    """Without a warm-up, "no kernel for this dtype" (flash in fp32 on a GPU) shows at the first timed call."""
    real_call = TorchModel._call

    def call(self, prompts, seeds, knobs):
        if knobs.guidance_scale == 3.0:  # stands in for a forced SDPA backend that has no kernel
            raise RuntimeError("No available kernel. Aborting execution.")
        return real_call(self, prompts, seeds, knobs)

    monkeypatch.setattr(TorchModel, "_call", call)
    path = suite(write_suite, timing={"warmup": 0, "repeats": 1}, matrix={"guidance_scale": [3.0, 1.0]})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("config")
    assert results.loc["guidance_scale=3.0", "status"] == "skipped"
    assert "has no kernel for this device/dtype/shape" in results.loc["guidance_scale=3.0", "reason"]
    assert results.loc["guidance_scale=3.0", "n_skipped"] == 4 and results.loc["guidance_scale=3.0", "n_failed"] == 0
    assert results.loc["guidance_scale=1.0", "n_ok"] == 4


@pytest.mark.slow  # torch.compile takes ~35 s on CPU
def test_compile_recompiles_are_counted_and_warmup_is_excluded(write_suite, tmp_path, monkeypatch, capsys):
    from t2ibench import cli

    # no warm-up asked for: a compiled config still gets one (compilation never lands in a timed call)
    path = suite(write_suite, prompts=["a red cube"], timing={"warmup": 0, "repeats": 2},
                 matrix={"compile": [True, False]})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("config")
    cells = run.cells().set_index("config")
    assert set(cells["status"]) == {"ok"}
    compiled, eager = results.loc["compile=true"], results.loc["compile=false"]
    assert compiled["recompiles"] == 0  # the warm-up compiled; the measured calls reuse the graph
    assert compiled["warmup_ms"] > 10 * compiled["latency_ms_p50"]  # compile time stays out of the latency
    assert cells.loc["compile=true", "latency_ms"].max() < compiled["warmup_ms"] / 5
    # compile time, reported apart: the first call's time above a steady timed call's
    assert compiled["compile_ms"] == pytest.approx(compiled["warmup_ms"] - compiled["latency_ms_p50"], rel=0.05)
    assert eager["recompiles"] == 0 and eager["warmup_ms"] == 0 and math.isnan(eager["compile_ms"])
    import torch._dynamo.utils

    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert compiled["pareto_note"] == ""

    # a config that recompiles in its timed calls is flagged: excluded from the frontier, named in the summary
    from t2ibench.store import RunStore

    with RunStore.open(run.run_dir, write=True) as store:
        store.update_config(compiled["config_id"], recompiles=3)
    assert "recompiled 3× during timed calls" in run.results().set_index("config").loc["compile=true", "pareto_note"]
    monkeypatch.setenv("COLUMNS", "300")
    cli._print_summary(run)
    assert "compile=true: recompiled 3× during timed calls" in capsys.readouterr().out
