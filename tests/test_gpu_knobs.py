"""The CUDA-only knob paths, observed during the call: the flash/efficient SDPA kernels, tf32, model and
sequential offload, the fp16 VAE upcast, compile with max-autotune, CUDA-event phases and VRAM peaks.
Skipped without CUDA; on a GPU machine: ``python -m pytest -m gpu``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import t2ibench
from t2ibench.backends.torch.random_models import RANDOM_PIPELINES
from t2ibench.backends.torch.engine import TorchBackend

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def cuda_suite(write_suite, defaults: dict | None = None, **overrides):
    return write_suite(**{"prompts": ["a red cube", "a lighthouse"], "seeds": [0],
                          "timing": {"warmup": 1, "repeats": 1},
                          "defaults": {"steps": 3, "width": 64, "height": 64, "guidance_scale": 5.0, **(defaults or {})},
                          **overrides})


def run_cuda(path, tmp_path):
    return t2ibench.run(path, out=tmp_path / "run", device="cuda", metrics=False)


def test_attention_knob_forces_each_sdpa_kernel_on_cuda(observed, write_suite, tmp_path):
    from torch.nn.attention import SDPBackend

    path = cuda_suite(write_suite, defaults={"precision": "fp16"},
                      matrix={"attention": ["sdpa", "math", "flash", "efficient", "xformers"]},
                      include=[{"name": "flash-fp32", "precision": "fp32", "attention": "flash"}])
    results = run_cuda(path, tmp_path).results().set_index("config")
    used = {}
    for c in observed:
        used.setdefault(c.knobs.options.attention if c.knobs.precision == "fp16" else "fp32", set()).update(c.sdpa)
    assert used["math"] == {SDPBackend.MATH}
    assert used["flash"] == {SDPBackend.FLASH_ATTENTION}
    assert used["efficient"] == {SDPBackend.EFFICIENT_ATTENTION}
    assert used["sdpa"] and SDPBackend.MATH not in used["sdpa"]  # torch's own choice is a fused kernel
    for name in ("attention=sdpa", "attention=math", "attention=flash", "attention=efficient"):
        assert results.loc[name, "status"] == "done" and results.loc[name, "n_failed"] == 0
    assert results.loc["flash-fp32", "status"] == "skipped"  # flash has no fp32 kernel
    assert "has no kernel" in results.loc["flash-fp32", "reason"]
    if results.loc["attention=xformers", "status"] == "skipped":
        assert "pip install 't2ibench[xformers]'" in results.loc["attention=xformers", "reason"]


def test_tf32_and_fp16_vae_upcast_apply_on_cuda_and_are_undone(observed, write_suite, tmp_path):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)  # torch's defaults
    path = cuda_suite(write_suite, include=[
        {"name": "tf32", "tf32": True}, {"name": "no-tf32", "guidance_scale": 4.0},
        {"name": "fp16-upcast", "precision": "fp16", "vae_upcast": True}, {"name": "fp16", "precision": "fp16"},
    ])
    results = run_cuda(path, tmp_path).results().set_index("config")
    assert set(results["n_failed"]) == {0}
    by = {}
    for c in observed:
        key = ("tf32" if c.knobs.options.tf32 else "fp16-upcast" if c.knobs.options.vae_upcast
               else "fp16" if c.knobs.precision == "fp16" else "no-tf32")
        by.setdefault(key, []).append(c)
    assert set(by) == {"tf32", "no-tf32", "fp16-upcast", "fp16"}
    assert all(c.tf32 for c in by["tf32"]) and not any(c.tf32 for k in ("no-tf32", "fp16") for c in by[k])
    for c in by["fp16-upcast"]:  # the denoiser in fp16, the VAE decoding in fp32
        assert c.unet_dtype == torch.float16 and c.vae_dtype == torch.float32
        assert set(c.decoder_input_dtypes) == {torch.float32}
    for c in by["fp16"]:
        assert c.unet_dtype == c.vae_dtype == torch.float16 and set(c.decoder_input_dtypes) == {torch.float16}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before  # restored


def test_model_and_sequential_offload_keep_weights_off_the_gpu(observed, write_suite, tmp_path, monkeypatch):
    loads = []
    real_load = TorchBackend.load
    monkeypatch.setattr(TorchBackend, "load", lambda self, model, knobs, device, **kw:
                        loads.append(knobs.options.offload) or real_load(self, model, knobs, device, **kw))
    path = cuda_suite(write_suite, matrix={"offload": ["none", "model", "sequential"]})
    run = run_cuda(path, tmp_path)
    assert set(run.results()["n_ok"]) == {2}
    assert loads == ["none", "model", "sequential"]  # offload is part of the load key
    where = {c.knobs.options.offload: (c.unet_device, c.offload_hooks) for c in observed}
    assert where["none"] == ("cuda", False)
    assert where["model"] == ("cpu", True)  # moved to the GPU only while it runs
    assert where["sequential"][0] in ("cpu", "meta") and where["sequential"][1]
    cells = run.cells()
    pixels = {(r["config"], r["prompt_id"]): np.asarray(Image.open(run.run_dir / r["image_path"]), dtype=np.int16)
              for _, r in cells.iterrows()}
    for (config, prompt_id), image in pixels.items():  # the same computation, only the weights move
        assert np.abs(image - pixels[("offload=none", prompt_id)]).max() <= 2, config


def test_compile_max_autotune_on_cuda_keeps_compile_out_of_latency(write_suite, tmp_path):
    path = cuda_suite(write_suite, include=[
        {"name": "eager", "channels_last": True},
        {"name": "max-autotune", "channels_last": True, "compile": {"mode": "max-autotune"}},
    ])
    results = run_cuda(path, tmp_path).results().set_index("config")
    compiled, eager = results.loc["max-autotune"], results.loc["eager"]
    assert compiled["status"] == "done" and compiled["n_ok"] == 2 and compiled["recompiles"] == 0
    assert compiled["warmup_ms"] > 10 * compiled["latency_ms_p50"]  # compilation happened in the warm-up
    assert compiled["latency_ms_p50"] < 5 * eager["latency_ms_p50"]  # and none of it in the timed calls


def test_cuda_event_phases_partition_each_call_and_vram_peaks_grow_with_batch(write_suite, tmp_path):
    path = cuda_suite(write_suite, prompts=["a red cube", "a lighthouse", "a cat", "a dog"],
                      defaults={"width": 256, "height": 256}, matrix={"batch_size": [1, 4]})
    run = run_cuda(path, tmp_path)
    cells = run.cells()
    assert set(cells["status"]) == {"ok"}
    for _, c in cells.iterrows():
        steps = json.loads(c["step_ms"])  # a JSON list, as in cells.csv
        assert len(steps) == 3 and min(steps) > 0
        assert c["encode_ms"] > 0 and c["decode_ms"] > 0
        assert c["encode_ms"] + c["denoise_ms"] + c["decode_ms"] == pytest.approx(c["latency_ms"], rel=1e-6)
        assert sum(steps) == pytest.approx(c["denoise_ms"], abs=1e-3)  # steps are stored to 0.1 µs
    results = run.results().set_index("config")
    one, four = results.loc["batch_size=1"], results.loc["batch_size=4"]
    unet = RANDOM_PIPELINES.get("tiny-sd")(device="meta").unet
    weights_mb = sum(p.numel() * p.element_size() for p in unet.parameters()) / 2**20
    assert weights_mb < one["peak_vram_mb"] < four["peak_vram_mb"]  # activations of 4 images outweigh 1
    assert four["images_per_s"] == pytest.approx(4000.0 / four["latency_ms_mean"])
