"""The full-size presets random:sd15 and random:sdxl (built on ``meta``: shapes only, no memory) and the
GPU sweep script (its CPU quick mode on a tiny model; the real sweep only with CUDA)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

ROOT = Path(__file__).resolve().parents[1]


def n_params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_sd15_preset_has_the_sd15_architecture():
    pipe = RANDOM_PIPELINES.get("sd15")(device="meta")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert n_params(pipe.unet) == pytest.approx(859.5, abs=1)
    assert n_params(pipe.vae) == pytest.approx(83.7, abs=0.5)
    assert n_params(pipe.text_encoder) == pytest.approx(123.1, abs=0.5)  # CLIP ViT-L/14 text tower
    cfg = pipe.unet.config
    assert tuple(cfg.block_out_channels) == (320, 640, 1280, 1280) and cfg.cross_attention_dim == 768
    assert pipe.vae_scale_factor == 8 and pipe.unet.device.type == "meta"
    ids = pipe.tokenizer("a cat").input_ids  # the built-in tokenizer, no download
    assert (ids[0], ids[-1]) == (512, 513) == (pipe.text_encoder.config.bos_token_id,
                                                 pipe.text_encoder.config.eos_token_id)


def test_sdxl_preset_has_the_sdxl_architecture():
    pipe = RANDOM_PIPELINES.get("sdxl")(device="meta")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert n_params(pipe.unet) == pytest.approx(2567.5, abs=1)
    assert n_params(pipe.text_encoder_2) == pytest.approx(694.7, abs=0.5)  # OpenCLIP bigG/14 text tower
    cfg = pipe.unet.config
    assert tuple(cfg.transformer_layers_per_block) == (1, 2, 10) and cfg.cross_attention_dim == 2048
    assert cfg.projection_class_embeddings_input_dim == 2816 and pipe.vae.config.scaling_factor == 0.13025


def _gpu_sweep():
    spec = importlib.util.spec_from_file_location("gpu_sweep", ROOT / "benchmarks" / "gpu_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_sweep_script_quick_mode_on_cpu(tmp_path, capsys):
    sweep = _gpu_sweep()
    full = sweep.sweep_suite("random:sdxl", steps=30, quick=False)
    assert full["defaults"]["width"] == 1024 and set(full["matrix"]) == {"precision", "attention", "batch_size"}
    assert [(c.get("compile"), c["batch_size"]) for c in full["include"]] == [
        (True, 1), (True, 4), ({"mode": "max-autotune"}, 1)]
    argv = ["--model", "random:tiny-sd", "--device", "cpu", "--quick", "--out", str(tmp_path)]
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| precision=")]
    assert len(rows) == 8 and all(row.endswith("| done |") for row in rows)
    cells = [row.split("|")[2:5] for row in rows]  # latency, images/s, peak VRAM
    assert all(float(lat) > 0 and float(ips) > 0 and vram.strip() == "—" for lat, ips, vram in cells)
    # the tables again, from the run directories alone
    assert sweep.main(["--model", "random:tiny-sd", "--tables-from", str(tmp_path)]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("| precision=")] == rows


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_sweep_runs_full_size_presets_on_cuda(tmp_path, capsys):
    assert _gpu_sweep().main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "### random:sd15" in out and "### random:sdxl" in out and "skipped" not in out
