"""The upscale stage (``upscale:``): its forms, sizes, timing, spandrel checkpoints, errors and config ids."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from PIL import Image

import fake_backend
import t2ibench
from t2ibench.backends.engine import CallOutcome, ImageOutcome
from t2ibench.backends.timing import CallTiming
from t2ibench.backends.upscale import UpscaleOptions, Upscalers
from t2ibench.errors import UserError
from t2ibench.suites import load_suite
from t2ibench.suites.knobs import Knobs

fake_backend.register()

# sha256 of the sorted config_ids of each builtin suite, as computed before the knob existed
BUILTIN_IDS = {
    "deploy-2026": (18, "01315aeb7c0da01a"), "sd15-deploy": (13, "e6d3e9cc5483ac7c"),
    "sdxl-deploy": (10, "17c39068551b41ef"), "sdxl-mlperf": (1, "f88a03b20d59994f"),
    "smoke": (5, "26953df080699520"),
}


@pytest.mark.parametrize("name", sorted(BUILTIN_IDS))
def test_existing_config_ids_are_unchanged(name):
    ids = sorted(c.config_id for c in load_suite(name).configs())
    assert (len(ids), hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]) == BUILTIN_IDS[name]


def test_upscale_enters_config_id_only_when_set():
    assert "upscale" not in Knobs().hashed() and "upscale" not in Knobs(upscale="none").hashed()
    short, full = Knobs(upscale={"method": "lanczos"}), Knobs(upscale={"method": "lanczos", "scale": 2})
    assert short.hashed() == full.hashed()
    assert full.hashed()["upscale"] == {"method": "lanczos", "scale": 2.0}
    assert Knobs(upscale={"method": "bicubic"}).hashed() != full.hashed()


@pytest.mark.parametrize("bad", [{}, {"method": "lanczos", "model": "x.pth"}, {"method": "nearest"},
                                 {"method": "lanczos", "scale": 0.5}, {"model": "x.pth", "steps": 20}])
def test_bad_forms_are_rejected(bad):
    with pytest.raises(ValueError):
        UpscaleOptions.model_validate(bad)


def test_kinds():
    assert UpscaleOptions(method="bicubic").kind == "pil"
    assert UpscaleOptions(model="/m/RealESRGAN_x4plus.pth").kind == "spandrel"
    assert UpscaleOptions(model="w/4x.safetensors").kind == "spandrel"
    assert UpscaleOptions(model="stabilityai/sd-x2-latent-upscaler", steps=20).kind == "diffusers"


def _outcome(images: list[np.ndarray]) -> CallOutcome:
    timing = CallTiming(latency_ms=10.0, encode_ms=1.0, denoise_ms=7.5, decode_ms=1.5, step_ms=[2.5, 2.5, 2.5])
    return CallOutcome([ImageOutcome("ok", i) for i in images] + [ImageOutcome("nan", None, "non-finite")], timing)


def _phases_add_up(t: CallTiming) -> bool:
    return math.isclose(t.encode_ms + t.denoise_ms + t.decode_ms + t.upscale_ms, t.latency_ms, rel_tol=1e-9)


@pytest.mark.parametrize("method,resample", [("lanczos", Image.Resampling.LANCZOS),
                                             ("bicubic", Image.Resampling.BICUBIC)])
def test_method_equals_pils_own_resize_and_adds_its_time(method, resample):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    stage = Upscalers("cpu").stage(UpscaleOptions(method=method, scale=2), "fp32")
    out = stage.apply(_outcome([img]), ["a cat", "padding"], [0, 0])
    expected = np.asarray(Image.fromarray(img).resize((96, 128), resample))
    assert out.images[0].pixels.shape == (128, 96, 3)
    assert np.array_equal(out.images[0].pixels, expected)
    assert out.images[1].status == "nan" and out.images[1].pixels is None  # not upscaled, kept as it was
    t = out.timing
    assert t.upscale_ms > 0 and _phases_add_up(t) and t.latency_ms == pytest.approx(10.0 + t.upscale_ms)
    assert (t.encode_ms, t.denoise_ms, t.decode_ms, t.step_ms) == (1.0, 7.5, 1.5, [2.5, 2.5, 2.5])


def esrgan_state_dict(nf: int = 8, gc: int = 32, blocks: int = 1, seed: int = 0) -> dict:
    """A random-weight ESRGAN (RRDBNet, 4×) in the BasicSR/Real-ESRGAN key layout, built here by hand
    (spandrel reads any width ``nf``; the growth channels ``gc`` of its RRDBNet are 32)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sd: dict = {}

    def conv(name: str, cin: int, cout: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        sd[f"{name}.bias"] = torch.zeros(cout)

    conv("conv_first", 3, nf)
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                conv(f"body.{b}.rdb{r}.conv{c}", nf + (c - 1) * gc, nf if c == 5 else gc)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, nf, nf)
    conv("conv_last", nf, 3)
    return sd


def save_esrgan(path) -> None:
    import torch

    sd = esrgan_state_dict()
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_random_esrgan_loads_through_spandrel(tmp_path, suffix):
    path = tmp_path / f"esrgan{suffix}"
    save_esrgan(path)
    upscalers = Upscalers("cpu")
    img = np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    native = upscalers.stage(UpscaleOptions(model=str(path)), "fp32")
    assert native.applied["architecture"] == "ESRGAN" and native.applied["native_scale"] == 4
    out = native.apply(_outcome([img]), ["p", "q"], [0, 1])
    assert out.images[0].pixels.shape == (64, 96, 3) and out.images[0].pixels.dtype == np.uint8
    assert _phases_add_up(out.timing) and out.timing.upscale_ms > 0
    # a 4x model asked for 2x: its output, resized by Lanczos to twice the input
    half = upscalers.stage(UpscaleOptions(model=str(path), scale=2), "fp32")
    assert half.upscaler is native.upscaler  # loaded once
    assert half.apply(_outcome([img]), ["p", "q"], [0, 1]).images[0].pixels.shape == (32, 48, 3)


def test_a_missing_or_unreadable_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="upscale model file '.*nope.pth' does not exist"):
        Upscalers("cpu").stage(UpscaleOptions(model=str(tmp_path / "nope.pth")), "fp32")
    junk = tmp_path / "junk.safetensors"
    from safetensors.torch import save_file
    import torch

    save_file({"weight": torch.zeros(2, 2)}, str(junk))
    with pytest.raises(UserError, match="spandrel does not recognise"):
        Upscalers("cpu").stage(UpscaleOptions(model=str(junk)), "fp32")
    with pytest.raises(UserError, match="upscale model 't2ibench-tests/no-upscaler' is not in the Hugging Face cache"):
        Upscalers("cpu").stage(UpscaleOptions(model="t2ibench-tests/no-upscaler"), "fp32")  # HF_HUB_OFFLINE=1


def _suite(write_suite, backend: str, upscale: list, **defaults):
    return write_suite(
        prompts=["a red cube on a table", "a lighthouse at dusk"], seeds=[0, 1],
        defaults={"steps": 2, "width": 64, "height": 48, "guidance_scale": 5.0, "backend": backend, **defaults},
        matrix={"upscale": upscale}, timing={"warmup": 1, "repeats": 2})


@pytest.mark.parametrize("backend", ["fake", "torch"])
def test_a_run_saves_and_times_the_upscaled_image(backend, write_suite, tmp_path):
    """Every backend: the saved image is PIL's own Lanczos resize of the same config's image without upscale,
    and the calls' phases add up to their latency, upscale included."""
    defaults = {"model": "random:tiny-sd"} if backend == "torch" else {}
    path = _suite(write_suite, backend, ["none", {"method": "lanczos", "scale": 2}], **defaults)
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells, results = run.cells(), run.results().set_index("config")
    plain, upscaled = results.index[0], results.index[1]
    assert (cells["status"] == "ok").all() and len(cells) == 8
    for _, row in cells[cells["config"] == upscaled].iterrows():
        twin = cells[(cells["config"] == plain) & (cells["prompt_id"] == row["prompt_id"])
                     & (cells["seed"] == row["seed"])].iloc[0]
        small = Image.open(run.run_dir / twin["image_path"])
        big = np.asarray(Image.open(run.run_dir / row["image_path"]))
        assert small.size == (64, 48) and big.shape == (96, 128, 3)
        assert np.array_equal(big, np.asarray(small.resize((128, 96), Image.Resampling.LANCZOS)))
    from t2ibench.store import RunStore

    with RunStore.open(run.run_dir) as store:
        calls = store.calls()
    ids = dict(zip(results.index, results["config_id"]))
    mine = [c for c in calls if c["config_id"] == ids[upscaled]]
    assert len(mine) == 4 and all(c["upscale_ms"] > 0 and _phases_add_up(CallTiming(
        c["latency_ms"], c["encode_ms"], c["denoise_ms"], c["decode_ms"], upscale_ms=c["upscale_ms"])) for c in mine)
    assert all(c["upscale_ms"] is None for c in calls if c["config_id"] == ids[plain])
    assert results.loc[upscaled, "upscale_ms_mean"] == pytest.approx(np.mean([c["upscale_ms"] for c in mine]))
    assert math.isnan(results.loc[plain, "upscale_ms_mean"])
    assert cells.loc[cells["config"] == upscaled, "upscale_ms"].notna().all()
    applied = results.loc[upscaled, "applied"]
    assert '"upscale": {' in applied and '"method": "lanczos"' in applied
    columns = list(run.results().columns)
    # upscale_ms_mean follows the earlier extras; only the serving columns (added after it) come later
    assert columns.index("latency_unstable") < columns.index("upscale_ms_mean") < columns.index("offered_rate")
    assert columns.index("upscale") < columns.index("n_ok")


def test_a_relative_checkpoint_resolves_against_the_suite_and_runs(write_suite, tmp_path):
    save_esrgan(tmp_path / "esrgan.safetensors")
    path = _suite(write_suite, "fake", [{"model": "esrgan.safetensors", "scale": 2}])
    (config,) = load_suite(path).configs()
    assert config.knobs.upscale.model == str(tmp_path / "esrgan.safetensors")
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells = run.cells()
    assert (cells["status"] == "ok").all()
    assert all(Image.open(run.run_dir / p).size == (128, 96) for p in cells["image_path"])


@pytest.mark.parametrize("verb", ["run", "validate"])
def test_a_missing_checkpoint_is_one_line_exit_2(verb, write_suite, tmp_path, capsys):
    from t2ibench.cli import main

    path = _suite(write_suite, "fake", [{"model": "missing-x4.pth"}])
    argv = [verb, str(path)] + (["--out", str(tmp_path / "run"), "--device", "cpu"] if verb == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "missing-x4.pth' does not exist" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "missing-x4.pth" in line]) == 1


def test_builtin_upscale_suite_compares_512_x2_with_1024():
    suite = load_suite("sdxl-upscale")
    configs = {c.name: c.knobs for c in suite.configs()}
    native = [k for k in configs.values() if k.upscale is None]
    assert [(k.width, k.height) for k in native] == [(1024, 1024)]
    upscaled = [k for k in configs.values() if k.upscale is not None]
    assert len(upscaled) >= 2 and all((k.width, k.height, k.upscale.scale or 2) == (512, 512, 2) for k in upscaled)
    assert {k.upscale.method for k in upscaled if k.upscale.method} == {"lanczos", "bicubic"}
    assert "latency_ms_p50" in suite.objectives and len(suite.objectives) >= 2


def _tiny_x4_upscaler():
    """A random-weight StableDiffusionUpscalePipeline (x4) at toy size, as stabilityai/stable-diffusion-x4-upscaler."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)

    from t2ibench.backends.torch.random_models import _clip_text, byte_level_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16, num_class_embeds=100)
    vae = AutoencoderKL(block_out_channels=[16, 16, 32], latent_channels=4, down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=1, norm_num_groups=4,
                        scaling_factor=0.08333)
    return StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=_clip_text(32, 2, 4), tokenizer=byte_level_clip_tokenizer(), unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"), max_noise_level=350)


def _tiny_latent_upscaler():
    """A random-weight StableDiffusionLatentUpscalePipeline (x2) at toy size, as stabilityai/sd-x2-latent-upscaler."""
    import torch
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionLatentUpscalePipeline,
                           UNet2DConditionModel)

    from t2ibench.backends.torch.random_models import _clip_text, byte_level_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        act_fn="gelu", attention_head_dim=8, norm_num_groups=None, block_out_channels=[32, 32, 64, 64],
        time_cond_proj_dim=160, conv_in_kernel=1, conv_out_kernel=1, cross_attention_dim=32, in_channels=8,
        down_block_types=("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"),
        up_block_types=("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D"),
        mid_block_type=None, only_cross_attention=False, out_channels=5, resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier", timestep_post_act="gelu")
    vae = AutoencoderKL(block_out_channels=[16, 16, 32, 32], latent_channels=4, layers_per_block=1, norm_num_groups=4,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    return StableDiffusionLatentUpscalePipeline(vae=vae, text_encoder=_clip_text(32, 2, 4),
                                                tokenizer=byte_level_clip_tokenizer(), unet=unet,
                                                scheduler=EulerDiscreteScheduler(prediction_type="sample"))


@pytest.mark.parametrize("build,size,native", [(_tiny_x4_upscaler, 16, 4), (_tiny_latent_upscaler, 64, 2)],
                         ids=["x4-upscaler", "latent-x2-upscaler"])
def test_a_diffusers_upscaler_folder_loads_and_upscales(build, size, native, tmp_path):
    """The real loading code on a save_pretrained folder of each diffusers upscaler, with random weights."""
    build().save_pretrained(tmp_path / "upscaler")
    options = UpscaleOptions(model=str(tmp_path / "upscaler"), steps=2, guidance_scale=0)
    stage = Upscalers("cpu").stage(options, "fp32")
    assert stage.applied["native_scale"] == native and stage.scale == native
    assert stage.applied["num_inference_steps"] == 2
    img = np.random.default_rng(2).integers(0, 256, (size, size, 3), dtype=np.uint8)
    first = stage.apply(_outcome([img]), ["a cat", "pad"], [3, 0])
    assert first.images[0].pixels.shape == (size * native, size * native, 3) and _phases_add_up(first.timing)
    again = stage.apply(_outcome([img]), ["a cat", "pad"], [3, 0])  # the seed's generator: the same image
    assert np.array_equal(first.images[0].pixels, again.images[0].pixels)


def test_a_folder_that_is_not_an_upscaler_is_a_user_error(tmp_path):
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

    RANDOM_PIPELINES.get("tiny-sd")().save_pretrained(tmp_path / "sd")
    with pytest.raises(UserError, match="is a StableDiffusionPipeline, not an upscaler"):
        Upscalers("cpu").stage(UpscaleOptions(model=str(tmp_path / "sd")), "fp32")
    with pytest.raises(UserError, match="upscale model folder '.*absent' does not exist"):
        Upscalers("cpu").stage(UpscaleOptions(model=str(tmp_path / "absent")), "fp32")
