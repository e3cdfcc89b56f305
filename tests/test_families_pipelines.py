"""Every pipeline family (SD 1.x, SDXL, SD3, PixArt-α/Σ, Flux) loads from a save_pretrained folder through
diffusers' auto pipeline and runs a knob matrix: statuses, skip reasons, timing phases and paired noise."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn.attention import SDPBackend

import t2ibench
from t2ibench.backends.torch import engine as torch_backend
from t2ibench.backends.torch.loading import load_pipeline
from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

FLOW = {"tiny-sd3", "tiny-flux"}
UNET = {"tiny-sd", "tiny-sdxl"}
FAMILIES = {  # arch: (pipeline class, denoiser class, initial latents shape or None for per-image generators)
    "tiny-sd": ("StableDiffusionPipeline", "UNet2DConditionModel", (4, 8, 8)),
    "tiny-sdxl": ("StableDiffusionXLPipeline", "UNet2DConditionModel", (4, 8, 8)),
    "tiny-sd3": ("StableDiffusion3Pipeline", "SD3Transformer2DModel", (16, 8, 8)),
    "tiny-pixart": ("PixArtAlphaPipeline", "PixArtTransformer2DModel", (4, 8, 8)),
    "tiny-pixart-sigma": ("PixArtSigmaPipeline", "PixArtTransformer2DModel", (4, 8, 8)),
    "tiny-flux": ("FluxPipeline", "FluxTransformer2DModel", None),
}
CONFIGS = [
    {"name": "base"},
    {"name": "bf16", "precision": "bf16"},
    {"name": "euler", "scheduler": "euler"},
    {"name": "ddim", "scheduler": "ddim"},
    {"name": "math", "attention": "math"},
    {"name": "sliced", "attention": "sliced"},
    {"name": "vae_slicing", "vae_slicing": True},
    {"name": "cached", "cache_text_embeddings": True},
    {"name": "channels_last", "channels_last": True},
    {"name": "bf16-upcast", "precision": "bf16", "vae_upcast": True, "vae_tiling": True},
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    def save(arch: str) -> str:
        folder = tmp_path_factory.mktemp(arch)
        RANDOM_PIPELINES.get(arch)().save_pretrained(folder)
        return str(folder)

    return save


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_family_runs_knob_matrix(arch, saved, write_suite, tmp_path, monkeypatch):
    pipe_cls, denoiser_cls, latent_shape = FAMILIES[arch]
    folder = saved(arch)
    loaded = load_pipeline(folder, precision="fp32")
    denoiser = loaded.unet if arch in UNET else loaded.transformer
    assert (type(loaded).__name__, type(denoiser).__name__) == (pipe_cls, denoiser_cls)

    shapes = []
    real = torch_backend.initial_latents
    monkeypatch.setattr(torch_backend, "initial_latents",
                        lambda seeds, shape, dtype: shapes.append(shape) or real(seeds, shape, dtype))
    backends: dict[str, set] = {}  # attention knob -> the SDPA backends torch selected during its calls
    current = {"attention": ""}
    real_call, real_sdpa = torch_backend.TorchModel._call, torch.nn.functional.scaled_dot_product_attention

    def call(self, prompts, seeds, knobs):
        current["attention"] = knobs.options.attention
        return real_call(self, prompts, seeds, knobs)

    def sdpa(*args, **kwargs):  # diffusers passes query/key/value by position or by name
        choice = SDPBackend(torch._fused_sdp_choice(*args, **kwargs))
        backends.setdefault(current["attention"], set()).add(choice)
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(torch_backend.TorchModel, "_call", call)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    path = write_suite(model=folder, prompts=["a red cube", "a lighthouse"], seeds=[3],
                       defaults={"steps": 2, "width": 64, "height": 64, "guidance_scale": 4.0},
                       include=CONFIGS, timing={"warmup": 1, "repeats": 1})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("config")
    expect_skipped = {"ddim"} if arch in FLOW else set()
    if arch not in UNET:
        expect_skipped.add("sliced")
    statuses = results["status"].to_dict()
    assert {c for c, s in statuses.items() if s == "skipped"} == expect_skipped, statuses
    assert all(statuses[c["name"]] == "done" for c in CONFIGS if c["name"] not in expect_skipped), statuses
    if arch in FLOW:
        assert "does not fit the flow-matching model" in results.loc["ddim", "reason"]
    if arch not in UNET:
        assert "no sliced processor" in results.loc["sliced", "reason"]

    cells = run.cells()
    ok = cells[cells["status"] == "ok"]
    assert len(ok) == 2 * (len(CONFIGS) - len(expect_skipped))
    for _, c in ok.iterrows():  # the step callback (legacy `callback` on PixArt) sees every step
        steps = json.loads(c["step_ms"])
        assert len(steps) == 2 and all(s > 0 for s in steps), (c["config"], steps)
        assert math.isclose(c["encode_ms"] + c["denoise_ms"] + c["decode_ms"], c["latency_ms"], rel_tol=1e-6)
        assert c["encode_ms"] > 0 and c["decode_ms"] > 0
    assert set(shapes) == ({latent_shape} if latent_shape else set())
    assert backends["math"] == {SDPBackend.MATH} and backends["sdpa"] == {SDPBackend.FLASH_ATTENTION}

    # paired noise: knobs that do not change the math give the same pixels (Flux via per-image generators)
    images = {(c["config"], c["prompt_id"]): (run.run_dir / c["image_path"]).read_bytes() for _, c in ok.iterrows()}
    for prompt_id in set(ok["prompt_id"]):
        assert images[("base", prompt_id)] == images[("vae_slicing", prompt_id)] == images[("cached", prompt_id)]


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_family_runs_with_the_tiny_vae(arch, write_suite, tmp_path):
    path = write_suite(model=f"random:{arch}", prompts=["a red cube"], seeds=[0], timing={"warmup": 0, "repeats": 1},
                       defaults={"steps": 2, "width": 64, "height": 64, "vae": "tiny"},
                       matrix={"vae_slicing": [False, True]})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    assert list(run.results()["n_ok"]) == [1, 1]
    assert type(load_pipeline(f"random:{arch}", precision="fp32", vae="tiny").vae).__name__ == "AutoencoderTiny"
