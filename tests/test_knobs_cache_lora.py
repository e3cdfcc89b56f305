"""The per-config knobs added with diffusers' own APIs: step caches (``cache``), LoRA adapters (``lora``),
the attention dispatcher's backends and regional compilation. Each is verified by observation (blocks
really executed, adapters active in peft's layers, the dispatcher backend function really called, the
modules really compiled) and undone for the next config: a plain config after them gives the same bytes
as a fresh load. Tiny random pipelines at 32×32 on CPU; the CUDA-only backends are skipped here with
their reason (and run under the ``gpu`` marker where there is CUDA)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import t2ibench

STEPS = 4
CPU = not torch.cuda.is_available()


def run_suite(write_suite, tmp_path, model, include, name="run", steps=STEPS, warmup=0, device="cpu",
              guidance_scale=5.0, repeats=1):
    path = write_suite(f"{name}.yaml", model=model, prompts=["a red cube"], seeds=[0],
                       defaults={"steps": steps, "width": 32, "height": 32, "guidance_scale": guidance_scale},
                       timing={"warmup": warmup, "repeats": repeats}, include=include or None)
    run = t2ibench.run(path, out=tmp_path / name, device=device, metrics=False)
    return run, run.results().set_index("config")


def pixels(run, results, config) -> np.ndarray:
    (image,) = (run.run_dir / "images" / results.loc[config, "config_id"]).glob("*.png")
    return np.asarray(Image.open(image)).astype(int)


def applied(results, config) -> dict:
    return json.loads(results.loc[config, "applied"] or "{}")


# -- cache ---------------------------------------------------------------------------------------
CACHES = [
    {"name": "fbc", "cache": {"method": "first_block", "threshold": 0.5}},  # loose: random weights skip
    {"name": "fbc-tiny", "cache": {"method": "first_block", "threshold": 1e-6}},
    {"name": "taylorseer", "cache": {"method": "taylorseer", "cache_interval": 2, "disable_cache_before_step": 1}},
    {"name": "taylorseer-every-step", "cache": {"method": "taylorseer", "cache_interval": 1,
                                                "disable_cache_before_step": 0}},
    {"name": "pab", "cache": {"method": "pab", "spatial_attention_timestep_skip_range": [-1, 1001]}},
]


@pytest.mark.parametrize("model", ["random:tiny-flux", "random:tiny-sd3"])
def test_transformer_caches_skip_what_they_are_observed_to_skip(write_suite, tmp_path, model):
    run, results = run_suite(write_suite, tmp_path, model, CACHES)
    hit = results["cache_hit_rate"]
    assert np.isnan(hit["default"])  # no cache: no hit rate
    # TaylorSeer's schedule (compute at steps 0, 1, 3 of 4… per its interval) does not depend on the weights
    assert hit["taylorseer"] == 0.5 and hit["pab"] == 0.5
    assert hit["taylorseer-every-step"] == 0.0
    for name in ("taylorseer", "pab"):
        info = applied(results, name)["cache"]
        assert info["unit"] == "attention layers" and info["units"] == 2
        assert not np.array_equal(pixels(run, results, name), pixels(run, results, "default"))
    # a cache that skips nothing computes exactly what the plain config computes
    assert np.array_equal(pixels(run, results, "taylorseer-every-step"), pixels(run, results, "default"))
    if model == "random:tiny-flux":
        assert hit["fbc"] > 0.1 and hit["fbc-tiny"] == 0.0
        info = applied(results, "fbc")["cache"]
        assert info == {"method": "first_block", "via": "diffusers enable_cache", "config": "FirstBlockCacheConfig",
                        "unit": "transformer blocks", "units": 2,
                        "unit_classes": {"FluxTransformerBlock": 1, "FluxSingleTransformerBlock": 1}}
        assert np.array_equal(pixels(run, results, "fbc-tiny"), pixels(run, results, "default"))
        assert applied(results, "taylorseer")["cache"]["via"] == "diffusers enable_cache"  # Flux has the CacheMixin
    else:  # SD3's transformer has no CacheMixin and its pipeline opens no cache context: hooks applied directly
        assert applied(results, "taylorseer")["cache"]["via"] == "diffusers hooks.apply_*"
        for name in ("fbc", "fbc-tiny"):
            assert results.loc[name, "status"] == "skipped"
            assert "context_pre_only" in results.loc[name, "reason"]
    html = (run.run_dir / "report.html").read_text()
    assert "cache hit" in html and "not those of a trained model" in html
    assert "cache taylorseer: 2 attention layers" in html


def test_a_cache_with_compile_is_skipped_with_its_reason(write_suite, tmp_path):
    """Counting skipped blocks in Python under torch.compile makes dynamo guard on the count (a recompile
    inside the timed calls, seen with TORCH_LOGS=recompiles): refused until the count leaves Python."""
    cache = {"method": "first_block", "threshold": 0.5}
    _, results = run_suite(write_suite, tmp_path, "random:tiny-flux", [{"name": "compiled", "cache": cache,
                                                                         "compile": True}])
    assert results.loc["compiled", "status"] == "skipped"
    assert "cache together with compile is not supported yet" in results.loc["compiled", "reason"]
    assert results.loc["default", "status"] == "done"


def test_deepcache_on_a_unet_and_transformer_caches_are_skipped_there(write_suite, tmp_path):
    include = [{"name": "deepcache", "cache": {"method": "deepcache", "cache_interval": 3}},
               *({"name": m, "cache": {"method": m}} for m in ("first_block", "taylorseer", "pab", "magcache")),
               {"name": "plain", "guidance_scale": 4.0}]
    run, results = run_suite(write_suite, tmp_path, "random:tiny-sd", include)
    fresh, fresh_results = run_suite(write_suite, tmp_path, "random:tiny-sd", [], name="fresh", guidance_scale=4.0)
    assert np.array_equal(pixels(run, results, "plain"), pixels(fresh, fresh_results, "default"))  # DeepCache undone
    # 4 steps, interval 3: steps 1 and 2 reuse the deep features; 4 of the 5 UNet blocks (2 down, mid,
    # the deeper up block) are skipped there: 2 × 4 / (4 × 5)
    assert results.loc["deepcache", "cache_hit_rate"] == pytest.approx(0.4)
    assert applied(results, "deepcache")["cache"]["via"].startswith("DeepCache ")
    assert not np.array_equal(pixels(run, results, "deepcache"), pixels(run, results, "default"))
    for m in ("first_block", "taylorseer", "pab", "magcache"):
        assert results.loc[m, "status"] == "skipped"
        assert results.loc[m, "reason"] == (f"cache '{m}' needs a transformer denoiser (Flux, SD3…), "
                                            "not UNet2DConditionModel")


@pytest.mark.parametrize("model,cache", [("random:tiny-sd3", {"method": "taylorseer", "cache_interval": 2,
                                                                   "disable_cache_before_step": 1}),
                                         ("random:tiny-flux", {"method": "first_block", "threshold": 0.5})])
def test_every_call_of_a_cached_config_starts_from_a_fresh_cache(model, cache):
    """SD3's pipeline neither opens a cache context nor resets the hooks: the engine does, before each call."""
    from t2ibench.backends.torch.engine import TorchBackend
    from t2ibench.suites.knobs import Knobs

    knobs = Knobs(steps=STEPS, width=32, height=32, guidance_scale=5.0, cache=cache)
    model = TorchBackend().load(model, knobs, "cpu")
    try:
        model.configure(knobs)
        first, second = (model.generate(["a red cube"], [0], knobs) for _ in range(2))
        assert first.cache_hit_rate == second.cache_hit_rate > 0
        assert np.array_equal(first.images[0].pixels, second.images[0].pixels)
        plain = Knobs(steps=STEPS, width=32, height=32, guidance_scale=5.0)
        model.configure(plain)
        assert model.generate(["a red cube"], [0], plain).cache_hit_rate is None
        # no hook and no forward left (Flux's pipeline itself gives its transformer an empty hook registry)
        assert not any(getattr(m, "_diffusers_hook", None) and m._diffusers_hook.hooks or "forward" in m.__dict__
                       for m in model.denoiser.modules())
    finally:
        model.close()


def test_cache_reasons_deepcache_missing_and_magcache_without_ratios(monkeypatch):
    from t2ibench.backends.torch import caching
    from t2ibench.backends.torch.options import DeepCache, MagCache
    from t2ibench.backends.torch.random_models import tiny_flux, tiny_pixart, tiny_sd
    from t2ibench.errors import SkipConfig

    sd = tiny_sd()
    real = caching.importlib.util.find_spec
    monkeypatch.setattr(caching.importlib.util, "find_spec", lambda n, *a: None if n == "DeepCache" else real(n, *a))
    with pytest.raises(SkipConfig, match=r"pip install 't2ibench\[cache\]'"):
        caching.apply_cache(DeepCache(method="deepcache"), sd, sd.unet, "unet", STEPS)
    pixart = tiny_pixart()
    with pytest.raises(SkipConfig, match="needs magnitude ratios for PixArtTransformer2DModel: set cache.mag_ratios"):
        caching.apply_cache(MagCache(method="magcache"), pixart, pixart.transformer, "transformer", STEPS)
    flux = tiny_flux()  # Flux: diffusers' published FLUX.1 ratios, recorded as such
    active = caching.apply_cache(MagCache(method="magcache"), flux, flux.transformer, "transformer", STEPS)
    assert "FLUX_MAG_RATIOS" in active.applied["mag_ratios"]
    active.remove()
    assert not any(hasattr(m, "_diffusers_hook") or "forward" in m.__dict__ for m in flux.transformer.modules())


# -- LoRA ----------------------------------------------------------------------------------------
def test_random_lora_changes_the_output_fused_or_not(write_suite, tmp_path, monkeypatch):
    from t2ibench.backends.torch import lora

    built = []
    real = lora.random_lora
    monkeypatch.setattr(lora, "random_lora", lambda name, *a, **k: built.append(name) or real(name, *a, **k))
    include = [
        {"name": "lora", "lora": [{"source": "random:a"}]},
        {"name": "lora-fused", "lora": [{"source": "random:a", "fuse": True}]},
        {"name": "two-fused", "lora": [{"source": "random:a", "scale": 0.5, "fuse": True},
                                       {"source": "random:b", "scale": 0.5, "fuse": True}]},
        {"name": "two", "lora": [{"source": "random:a", "scale": 0.5}, {"source": "random:b", "scale": 0.5}]},
        {"name": "mixed", "lora": [{"source": "random:a", "fuse": True}, {"source": "random:b"}]},
    ]
    run, results = run_suite(write_suite, tmp_path, "random:tiny-sd", include)
    assert sorted(built) == ["a", "b"]  # each source is built (read) once per loaded model
    plain = pixels(run, results, "default")
    for name in ("lora", "two"):
        unfused, fused = pixels(run, results, name), pixels(run, results, "two-fused" if name == "two" else "lora-fused")
        assert np.abs(unfused - plain).max() > 5  # the adapter changes the image
        assert np.abs(fused - unfused).max() <= 2  # fusing changes only float rounding
    seen = applied(results, "two-fused")["lora"]
    assert [(a["source"], a["scale"], a["active"], a["fused"], a["components"]) for a in seen] == [
        ("random:a", 0.5, True, True, ["unet"]), ("random:b", 0.5, True, True, ["unet"])]
    assert seen[0]["layers"] == 32  # to_q, to_k, to_v, to_out.0 of the tiny UNet's 8 attention layers
    assert [a["fused"] for a in applied(results, "two")["lora"]] == [False, False]
    assert results.loc["mixed", "status"] == "skipped" and "fuse must be the same" in results.loc["mixed", "reason"]


def test_a_missing_lora_file_is_a_user_error_before_any_image(write_suite, tmp_path):
    from t2ibench.errors import UserError

    missing = tmp_path / "nope.safetensors"
    include = [{"name": "missing", "lora": [{"source": str(missing)}]}, {"name": "after", "steps": 1}]
    with pytest.raises(UserError, match=f"include\\[0\\].lora\\[0\\].source: lora file '{missing}' does not exist"):
        run_suite(write_suite, tmp_path, "random:tiny-sd", include)
    assert not (tmp_path / "run").exists()  # the preflight stops the run before it writes or generates anything


def test_a_lora_file_deleted_after_the_preflight_fails_its_config_only(write_suite, tmp_path, monkeypatch):
    """The engine's own check stays: a file gone between the preflight and the config is that config's failure."""
    from t2ibench.errors import UserError
    from t2ibench.orchestration import RunUserError

    monkeypatch.setattr("t2ibench.orchestration.preflight_run", lambda *args, **kwargs: None)
    missing = tmp_path / "nope.safetensors"
    include = [{"name": "missing", "lora": [{"source": str(missing)}]}, {"name": "after", "steps": 1}]
    with pytest.raises(RunUserError, match=f"lora file '{missing}' does not exist") as error:
        run_suite(write_suite, tmp_path, "random:tiny-sd", include)
    assert isinstance(error.value, UserError) and error.value.run_dir == tmp_path / "run"
    results = t2ibench.open_run(tmp_path / "run").results().set_index("config")
    assert results.loc["missing", "status"] == "failed"
    assert f"lora file '{missing}' does not exist" in results.loc["missing", "reason"]
    assert results.loc["after", "status"] == "done" and results.loc["default", "status"] == "done"


def test_fused_lora_is_removed_to_the_exact_base_weights():
    from t2ibench.backends.torch.lora import LoraManager
    from t2ibench.backends.torch.options import LoraAdapter
    from t2ibench.backends.torch.random_models import tiny_flux

    pipe = tiny_flux()
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    manager = LoraManager(pipe, "transformer")
    seen = manager.apply([LoraAdapter(source="random:x", scale=0.7, fuse=True)])
    assert seen[0]["fused"] and seen[0]["active"] and seen[0]["layers"] == 7
    manager.remove()
    after = pipe.transformer.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)  # unfuse alone leaves ~1e-7 residue
    assert not any(hasattr(m, "base_layer") for m in pipe.transformer.modules())
    assert not hasattr(pipe.transformer, "peft_config") and pipe.get_list_adapters() == {}


def test_lora_from_a_local_file_and_a_hub_id_not_in_the_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from t2ibench.backends.torch.lora import LoraManager, random_lora
    from t2ibench.backends.torch.options import LoraAdapter
    from t2ibench.backends.torch.random_models import tiny_sd
    from t2ibench.errors import UserError

    pipe = tiny_sd()
    path = tmp_path / "adapter.safetensors"
    save_file(random_lora("f", pipe.unet, "unet"), str(path))
    manager = LoraManager(pipe, "unet")
    seen = manager.apply([LoraAdapter(source=str(path), scale=0.8)])
    assert (seen[0]["active"], seen[0]["layers"], seen[0]["fused"]) == (True, 32, False)
    manager.remove()
    assert pipe.get_list_adapters() == {}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="lora 'latent-consistency/lcm-lora-sdxl' .* is not in the Hugging Face cache"):
        manager.state_dict(LoraAdapter(source="latent-consistency/lcm-lora-sdxl"))


# -- attention dispatcher --------------------------------------------------------------------------
def test_dispatcher_backends_are_observed_and_cuda_ones_skip_on_cpu(write_suite, tmp_path):
    knobs = ["native", "flex", "flash_attn", "flash3", "sage", "cudnn"]
    run, results = run_suite(write_suite, tmp_path, "random:tiny-flux",
                             [{"name": k, "attention": k} for k in knobs], steps=2)
    for knob, backend in (("native", "native"), ("flex", "flex")):
        assert results.loc[knob, "status"] == "done"
        seen = applied(results, knob)["attention"]
        assert seen["backend"] == backend and seen["calls_per_image_call"] == 4  # 2 steps × 2 Flux blocks
    # native is what Flux's processors dispatch to by default: the same pixels
    assert np.array_equal(pixels(run, results, "native"), pixels(run, results, "default"))
    assert np.abs(pixels(run, results, "flex") - pixels(run, results, "default")).max() <= 1
    if CPU:
        for knob in ("flash_attn", "flash3", "sage", "cudnn"):
            assert results.loc[knob, "status"] == "skipped"
            assert results.loc[knob, "reason"].startswith(f"attention '{knob}'")
        assert "flash-attn" in results.loc["flash_attn", "reason"]
        assert "sageattention" in results.loc["sage", "reason"]
        assert results.loc["cudnn", "reason"] == "attention 'cudnn' needs a CUDA device"


def test_dispatcher_backend_on_models_that_do_not_dispatch_is_skipped(write_suite, tmp_path):
    _, results = run_suite(write_suite, tmp_path, "random:tiny-sd", [{"name": "native", "attention": "native"}])
    assert results.loc["native", "status"] == "skipped"
    assert results.loc["native", "reason"] == (
        "attention 'native' is a diffusers dispatcher backend, and UNet2DConditionModel's attention processors "
        "(AttnProcessor2_0) do not call the dispatcher")


def test_a_dispatcher_fallback_is_a_skip_not_a_silent_result():
    from t2ibench.backends.torch.attention import check_observed
    from t2ibench.errors import SkipConfig

    assert check_observed("flex", {"calls": {"flex": 4}}, "X")["backend"] == "flex"
    assert check_observed("flex", {"calls": {}, "traced": {"flex"}}, "X")["compiled_into_graph"]
    with pytest.raises(SkipConfig, match="also ran native"):
        check_observed("flex", {"calls": {"flex": 2, "native": 2}}, "X")
    with pytest.raises(SkipConfig, match="also ran native"):
        check_observed("flex", {"calls": {"flex": 2}, "traced": {"native"}}, "X")
    with pytest.raises(SkipConfig, match="no attention call"):
        check_observed("flex", {"calls": {}}, "X")


# -- undo ----------------------------------------------------------------------------------------
def test_knobs_are_undone_and_regional_compile_observed(write_suite, tmp_path, monkeypatch):
    """One load group: a cache, a fused LoRA, a dispatcher backend and a regional compile, then a plain
    config: its image is byte-identical to a fresh load's."""
    from t2ibench.backends.torch.engine import TorchModel

    order = []
    real = TorchModel.configure
    monkeypatch.setattr(TorchModel, "configure", lambda self, knobs: order.append(knobs) or real(self, knobs))
    include = [
        {"name": "fbc", "cache": {"method": "first_block", "threshold": 0.5}},
        {"name": "lora-fused", "lora": [{"source": "random:a", "fuse": True}]},
        {"name": "flex", "attention": "flex"},
        {"name": "regional", "compile": {"regional": True}, "attention": "native"},
        {"name": "plain", "guidance_scale": 4.0},
    ]
    run, results = run_suite(write_suite, tmp_path, "random:tiny-flux", include, steps=2, name="mixed",
                             repeats=2)
    last = order[-1]  # the plain one ran last
    assert (last.guidance_scale, last.options.cache, last.options.lora) == (4.0, None, ())
    assert set(results["status"]) == {"done"}
    assert applied(results, "regional")["compiled_regions"] == {"FluxTransformerBlock": 1,
                                                                "FluxSingleTransformerBlock": 1}
    assert results.loc["regional", "compile_ms"] > 0 and results.loc["regional", "recompiles"] == 0
    # inside compiled blocks the dispatcher's backend is recorded when traced (no counter in the graph)
    assert applied(results, "regional")["attention"] == {"knob": "native", "backend": "native",
                                                         "calls_per_image_call": 0, "compiled_into_graph": True}
    assert applied(results, "plain") == {}
    fresh, fresh_results = run_suite(write_suite, tmp_path, "random:tiny-flux", [], steps=2, name="fresh",
                                     guidance_scale=4.0)
    assert np.array_equal(pixels(run, results, "plain"), pixels(fresh, fresh_results, "default"))
    assert results.loc["plain", "config_id"] == fresh_results.loc["default", "config_id"]


# -- CUDA ----------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(CPU, reason="needs CUDA")
def test_dispatcher_backends_on_cuda_run_or_skip_with_their_reason(write_suite, tmp_path):
    knobs = ["native", "flex", "cudnn", "flash_attn", "flash3", "sage"]
    include = [{"name": k, "attention": k, "precision": "bf16"} for k in knobs]
    include.append({"name": "fbc", "cache": {"method": "first_block", "threshold": 0.5}})
    _, results = run_suite(write_suite, tmp_path, "random:tiny-flux", include, steps=2, device="cuda")
    for knob in knobs:
        row = results.loc[knob]
        if row["status"] == "done":
            from t2ibench.backends.torch.options import DISPATCHER_ATTENTION

            assert applied(results, knob)["attention"]["backend"] == DISPATCHER_ATTENTION[knob]
        else:
            assert row["status"] == "skipped" and row["reason"].startswith(f"attention '{knob}'")
            assert "needs a CUDA device" not in row["reason"]
    assert results.loc["native", "status"] == "done" and results.loc["cudnn", "status"] == "done"
    assert results.loc["fbc", "cache_hit_rate"] > 0
