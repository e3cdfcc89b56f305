"""The load-time weight knobs of the torch backend, observed: ``quantize`` (torchao, quanto; bitsandbytes and
float8 skip on CPU), ``layerwise_casting``, ``offload: group`` (skips on CPU), GGUF denoisers, and the
full-size ``random:flux-dev`` preset (on ``meta``). The CUDA paths are at the end, under the ``gpu`` marker."""

from __future__ import annotations

import csv
import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import t2ibench
from t2ibench.backends.torch.engine import TorchBackend
from t2ibench.backends.torch.options import compile_options
from t2ibench.backends.torch.random_models import RANDOM_PIPELINES
from t2ibench.errors import UserError
from t2ibench.suites import SuiteError, load_suite

CUDA = torch.cuda.is_available()


def quick(write_suite, model: str = "random:tiny-sd", **overrides):
    """One prompt, one seed, 2 steps at 64x64, no warm-up: a few seconds per load on CPU."""
    return write_suite(**{"model": model, "prompts": ["a red cube on a table"], "seeds": [0],
                          "defaults": {"steps": 2, "width": 64, "height": 64, "guidance_scale": 5.0},
                          "timing": {"warmup": 0, "repeats": 1}, **overrides})


def run_quick(path, out, device="cpu"):
    return t2ibench.run(path, out=out, device=device, metrics=False)


def pixels(run_dir) -> dict[str, np.ndarray]:
    """{config name: the image's pixels (int16)} of a one-image-per-config run."""
    with open(run_dir / "cells.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    return {r["config"]: np.asarray(Image.open(run_dir / r["image_path"])).astype(np.int16) for r in rows}


def results_rows(run_dir) -> dict[str, dict]:
    with open(run_dir / "results.csv") as f:
        return {r["config"]: r for r in csv.DictReader(f)}


def applied(row: dict) -> dict:
    return json.loads(row["applied"]) if row["applied"] else {}


@pytest.fixture
def loads(monkeypatch) -> list:
    """The knobs of every TorchBackend.load of the run (one per load group)."""
    seen = []
    real = TorchBackend.load
    monkeypatch.setattr(TorchBackend, "load", lambda self, model, knobs, device, **kw:
                        seen.append(knobs) or real(self, model, knobs, device, **kw))
    return seen


# -- quantize ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, denoiser", [("random:tiny-sd", "unet"), ("random:tiny-flux", "transformer")])
def test_torchao_int8_quantizes_the_denoiser_end_to_end(write_suite, tmp_path, loads, model, denoiser):
    include = [{"name": "int8wo", "quantize": "int8wo"},
               {"name": "int8dq", "quantize": {"backend": "torchao", "type": "int8dq", "components": ["denoiser"]}},
               {"name": "plain"}]  # after the quantized loads
    path = quick(write_suite, model, include=include)
    run_quick(path, tmp_path / "run")
    assert len(loads) == 3  # configs differing only by quantize are different loads
    rows = results_rows(tmp_path / "run")
    assert {r["status"] for r in rows.values()} == {"done"} and {r["n_ok"] for r in rows.values()} == {"1"}
    configs = {"int8wo": "Int8WeightOnlyConfig", "int8dq": "Int8DynamicActivationInt8WeightConfig"}
    for name in ("int8wo", "int8dq"):
        kinds = dict(applied(rows[name])["quantize"])
        assert kinds.pop("config") == f"torchao {name} ({configs[name]})"  # the two read apart
        assert list(kinds) == [denoiser]  # the denoiser only, its Linear weights as torchao tensors
        assert kinds[denoiser]["Int8Tensor"] >= 10 and kinds[denoiser]["float32"] > 0
    assert "quantize" not in applied(rows["plain"])
    px = pixels(tmp_path / "run")
    for name in ("int8wo", "int8dq"):
        diff = np.abs(px[name] - px["plain"]).mean()
        assert 0 < diff < 8, (name, diff)  # the images differ, a little (status ok: finite, not black)
    # the unquantized config after the quantized loads is byte-identical to a fresh run of it alone
    fresh = quick(write_suite, model, filename="fresh.yaml", include=[{"name": "plain"}])
    run_quick(fresh, tmp_path / "fresh")
    assert rows["plain"]["config_id"] == results_rows(tmp_path / "fresh")["plain"]["config_id"]
    assert (pixels(tmp_path / "fresh")["plain"] == px["plain"]).all()


def test_quanto_int8_quantizes_the_denoiser_and_every_text_encoder(write_suite, tmp_path):
    include = [{"name": "quanto", "quantize": {"backend": "quanto", "type": "int8",
                                               "components": ["denoiser", "text_encoder"]}},
               {"name": "plain"}]
    run_quick(quick(write_suite, "random:tiny-sdxl", include=include), tmp_path / "run")
    rows = results_rows(tmp_path / "run")
    kinds = dict(applied(rows["quanto"])["quantize"])
    assert kinds.pop("config").startswith("quanto int8")
    assert set(kinds) == {"unet", "text_encoder", "text_encoder_2"}  # both CLIP encoders of SDXL
    assert all(k["WeightQBytesTensor"] > 0 for k in kinds.values())
    px = pixels(tmp_path / "run")
    assert 0 < np.abs(px["quanto"] - px["plain"]).mean() < 8


def test_a_pipeline_folder_is_quantized_by_from_pretrained_and_takes_a_gguf_denoiser(tmp_path):
    """The hub/folder path: a PipelineQuantizationConfig for from_pretrained; a GGUF file with a folder as base."""
    from t2ibench.backends.torch.loading import load_pipeline
    from t2ibench.backends.torch.options import QuantizeOptions

    folder = tmp_path / "tiny-flux"
    pipe = RANDOM_PIPELINES.get("tiny-flux")()
    pipe.save_pretrained(folder)
    facts: dict = {}
    quantized = load_pipeline(str(folder), precision="fp32", facts=facts,
                              quantize=QuantizeOptions(type="int8dq", components=("denoiser", "text_encoder")))
    kinds = dict(facts["quantize"])
    assert kinds.pop("config") == "torchao int8dq (Int8DynamicActivationInt8WeightConfig)"
    assert set(kinds) == {"transformer", "text_encoder", "text_encoder_2"}
    assert all(k["Int8Tensor"] > 0 for k in kinds.values())
    assert type(quantized.transformer.quantization_config).__module__.startswith("diffusers")
    assert type(quantized.text_encoder.config.quantization_config).__module__.startswith("transformers")

    gguf_path = tmp_path / "flux-Q8_0.gguf"
    n_q8 = write_tiny_gguf(gguf_path, pipe.transformer)
    facts = {}
    loaded = load_pipeline(str(gguf_path), precision="fp32", base=str(folder), facts=facts)
    assert facts["gguf"]["GGUFParameter"] == n_q8 and type(loaded).__name__ == "FluxPipeline"


def test_quantize_observation_fails_a_component_left_unquantized(monkeypatch):
    from t2ibench.backends.torch import quantization
    from t2ibench.backends.torch.loading import load_pipeline
    from t2ibench.backends.torch.options import QuantizeOptions

    monkeypatch.setattr(quantization, "quantize_built", lambda *a, **k: None)  # a quantizer that does nothing
    with pytest.raises(RuntimeError, match="'unet' has no quantized weight"):
        load_pipeline("random:tiny-sd", precision="fp32", quantize=QuantizeOptions(type="int8wo"))


@pytest.mark.skipif(CUDA, reason="the CPU skips")
def test_what_needs_a_gpu_is_skipped_on_cpu_with_its_reason(write_suite, tmp_path):
    include = [
        {"name": "nf4", "quantize": {"backend": "bitsandbytes", "type": "nf4"}},
        {"name": "float8dq", "quantize": "float8dq"},
        {"name": "float8wo", "quantize": "float8wo"},
        {"name": "int4wo", "quantize": "int4wo"},
        {"name": "group", "offload": "group"},
        {"name": "group-leaf", "offload": {"kind": "group", "level": "leaf", "streams": True}},
        {"name": "lc-text", "layerwise_casting": {"components": ["text_encoder"]}},
        {"name": "both", "quantize": "int8wo", "layerwise_casting": {"storage": "float8_e4m3fn"}},
    ]
    run_quick(quick(write_suite, include=include), tmp_path / "run")
    rows = results_rows(tmp_path / "run")
    reasons = {name: row["reason"] for name, row in rows.items() if row["status"] == "skipped"}
    assert set(reasons) == {i["name"] for i in include}
    assert reasons["nf4"] == "quantize bitsandbytes nf4 needs a CUDA GPU (bitsandbytes quantizes on the GPU)"
    assert reasons["float8dq"] == "quantize float8dq needs a CUDA GPU with compute capability >= 8.9"
    assert reasons["float8wo"] == "quantize float8wo needs a CUDA GPU with compute capability >= 8.9"
    assert "int4wo needs a CUDA GPU" in reasons["int4wo"]
    assert reasons["group"] == reasons["group-leaf"] == "offload 'group' needs a CUDA device"
    assert "layerwise_casting on text_encoder is not supported" in reasons["lc-text"]
    assert reasons["both"] == "quantize and layerwise_casting both on denoiser: choose one per component"
    with open(tmp_path / "run" / "cells.csv") as f:
        cells = list(csv.DictReader(f))
    assert {(c["status"], c["error"]) for c in cells if c["config"] == "nf4"} == {("skipped", reasons["nf4"])}


def test_a_missing_quantization_package_is_a_skip_that_says_how_to_install(monkeypatch):
    from t2ibench.backends.torch import quantization
    from t2ibench.backends.torch.options import QuantizeOptions
    from t2ibench.errors import SkipConfig

    monkeypatch.setattr(quantization, "_package_missing", lambda module: True)
    with pytest.raises(SkipConfig) as info:
        quantization.check_quantize(QuantizeOptions(backend="bitsandbytes", type="nf4"), "cuda")
    assert str(info.value) == ("quantize backend 'bitsandbytes' needs the bitsandbytes package: "
                               "pip install 't2ibench[quant]'")


def test_a_kernel_package_missing_at_quantization_time_is_a_skip(monkeypatch):
    from t2ibench.backends.torch import quantization
    from t2ibench.backends.torch.loading import load_pipeline
    from t2ibench.backends.torch.options import QuantizeOptions
    from t2ibench.errors import SkipConfig

    def missing(*args, **kwargs):
        raise ImportError("Requires mslk >= 1.0.0")

    monkeypatch.setattr(quantization, "quantize_built", missing)
    with pytest.raises(SkipConfig, match=r"^quantize torchao int8wo cannot run here: Requires mslk >= 1.0.0$"):
        load_pipeline("random:tiny-sd", precision="fp32", quantize=QuantizeOptions(type="int8wo"))


def test_quantize_short_and_mapping_forms_are_one_config_and_another_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def configs(*include: str) -> dict:
        (tmp_path / "s.yaml").write_text("name: t\nmodel: random:tiny-sd\nprompts: [a cat]\ninclude:\n"
                                         + "".join(f"  - {i}\n" for i in include))
        return {c.name: c for c in load_suite("s.yaml").configs()}

    short = configs("{name: short, quantize: int8wo}")["short"]
    long = configs("{name: long, quantize: {backend: torchao, type: int8wo, components: [denoiser]}}")["long"]
    assert short.config_id == long.config_id and short.knobs.options.quantize == long.knobs.options.quantize
    with pytest.raises(SuiteError, match="same model and knobs as 'short'"):  # one config, written twice
        configs("{name: short, quantize: int8wo}", "{name: long, quantize: {backend: torchao, type: int8wo}}")
    others = configs("{name: plain}", "{name: te, quantize: {type: int8wo, components: [denoiser, text_encoder]}}",
                     "{name: lc, layerwise_casting: {storage: float8_e4m3fn}}")
    four = [short, *others.values()]
    assert len({c.config_id for c in four}) == len({c.load_key() for c in four}) == 4


@pytest.mark.parametrize("value, message", [
    ("int3", "include[0].quantize"),
    ("{backend: quanto, type: nf4}", "include[0].quantize"),
    ("{type: int8wo, components: [unet]}", "include[0].quantize.components"),
])
def test_bad_quantize_is_a_one_line_suite_error_naming_the_key(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(textwrap.dedent(f"""\
        name: t
        model: random:tiny-sd
        prompts: [a cat]
        include:
          - {{name: q, quantize: {value}}}
        """))
    with pytest.raises(SuiteError) as info:
        load_suite("s.yaml")
    (problem,) = info.value.problems
    assert problem.startswith(f"s.yaml:5: {message}") and "\n" not in problem, problem


# -- layerwise casting --------------------------------------------------------------------------------
@pytest.mark.parametrize("model, denoiser", [("random:tiny-sd", "unet"), ("random:tiny-flux", "transformer")])
def test_fp8_layerwise_casting_stores_weights_in_fp8_and_still_generates(write_suite, tmp_path, model, denoiser):
    include = [{"name": "fp8", "layerwise_casting": {"storage": "float8_e4m3fn", "components": ["denoiser", "vae"]}},
               {"name": "plain"}]
    run_quick(quick(write_suite, model, include=include), tmp_path / "run")
    rows = results_rows(tmp_path / "run")
    assert rows["fp8"]["status"] == "done" and rows["fp8"]["n_ok"] == "1"  # finite pixels
    kinds = applied(rows["fp8"])["layerwise_casting"]
    assert set(kinds) == {denoiser, "vae"}
    for k in kinds.values():  # most weights in fp8; the norms and embeddings stay in the compute dtype
        assert k["float8_e4m3fn"] > k["float32"] > 0
    px = pixels(tmp_path / "run")
    assert 0 < np.abs(px["fp8"] - px["plain"]).mean() < 20


# -- GGUF ---------------------------------------------------------------------------------------------
def write_tiny_gguf(path, transformer) -> int:
    """The transformer's state dict (diffusers' key layout) as a GGUF file: 2-D weights in Q8_0, the rest in F32."""
    import gguf
    from gguf.quants import quantize

    writer = gguf.GGUFWriter(str(path), arch="flux")
    n_q8 = 0
    for name, tensor in transformer.state_dict().items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            q = quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            n_q8 += 1
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return n_q8


def test_gguf_denoiser_plugs_into_its_base_pipeline(write_suite, tmp_path):
    gguf_path = tmp_path / "tiny-flux-Q8_0.gguf"
    n_q8 = write_tiny_gguf(gguf_path, RANDOM_PIPELINES.get("tiny-flux")().transformer)
    path = quick(write_suite, "random:tiny-flux",
                 include=[{"name": "gguf", "model": str(gguf_path), "base": "random:tiny-flux"}, {"name": "plain"}])
    run_quick(path, tmp_path / "run")
    rows = results_rows(tmp_path / "run")
    assert rows["gguf"]["status"] == "done" and rows["gguf"]["n_ok"] == "1"
    assert rows["gguf"]["base"] == "random:tiny-flux"
    kinds = applied(rows["gguf"])["gguf"]
    assert kinds["GGUFParameter"] == n_q8 >= 10
    px = pixels(tmp_path / "run")
    assert np.abs(px["gguf"] - px["plain"]).mean() < 2  # the same weights, at 8 bits


def test_gguf_spec_errors(tmp_path):
    from t2ibench.backends.torch.loading import ModelSpec, load_pipeline

    gguf_path = tmp_path / "x.gguf"
    gguf_path.write_bytes(b"")
    assert ModelSpec.parse(str(gguf_path)) == ModelSpec("gguf", str(gguf_path))
    with pytest.raises(UserError, match="does not exist"):
        ModelSpec.parse(str(tmp_path / "missing.gguf"))
    with pytest.raises(UserError, match="name the pipeline it plugs into with `base:`"):
        load_pipeline(str(gguf_path), precision="fp32")
    with pytest.raises(UserError, match="is only for a .gguf model"):
        load_pipeline("random:tiny-sd", precision="fp32", base="random:tiny-flux")
    with pytest.raises(UserError, match="must be a pipeline"):
        load_pipeline(str(gguf_path), precision="fp32", base=str(gguf_path))


# -- presets and suites -------------------------------------------------------------------------------
def test_flux_dev_preset_has_the_flux1_dev_architecture():
    pipe = RANDOM_PIPELINES.get("flux-dev")(device="meta")
    assert type(pipe).__name__ == "FluxPipeline"
    t = pipe.transformer
    assert sum(p.numel() for p in t.parameters()) == 11_901_408_320  # FLUX.1-dev's transformer
    assert (len(t.transformer_blocks), len(t.single_transformer_blocks)) == (19, 38)
    cfg = t.config
    assert (cfg.num_attention_heads, cfg.attention_head_dim, cfg.in_channels) == (24, 128, 64)
    assert cfg.guidance_embeds and (cfg.joint_attention_dim, cfg.pooled_projection_dim) == (4096, 768)
    assert sum(p.numel() for p in pipe.text_encoder_2.parameters()) == pytest.approx(4.762e9, rel=1e-3)  # T5-XXL
    assert sum(p.numel() for p in pipe.text_encoder.parameters()) == pytest.approx(123.1e6, rel=1e-3)  # CLIP-L
    assert pipe.vae.config.latent_channels == 16 and t.device.type == "meta"


def test_deploy_2026_sweeps_the_new_knobs_on_sdxl_and_flux():
    suite = load_suite("deploy-2026")
    configs = suite.configs()
    models = {c.model for c in configs}
    assert models == {"stabilityai/stable-diffusion-xl-base-1.0", "black-forest-labs/FLUX.1-dev"}
    knobs = [c.knobs.options for c in configs]
    assert {k.quantize.type for k in knobs if k.quantize} >= {"int8dq", "float8dq"}
    assert any(k.layerwise_casting for k in knobs) and any(not isinstance(k.offload, str) for k in knobs)
    assert any(k.cache and k.cache.method == "first_block" for k in knobs)
    assert any(compile_options(k) and compile_options(k).regional for k in knobs)
    assert {"flex", "sage"} <= {k.attention for k in knobs}
    lcm = [c.knobs for c in configs if c.knobs.options.lora]
    assert lcm and all(k.scheduler == "lcm" and k.steps == 4 for k in lcm)
    assert all(c.model == "stabilityai/stable-diffusion-xl-base-1.0" for c in configs if c.knobs.options.lora)
    # nothing that is always skipped: the UNet's attention is not the dispatcher's, and cache + compile is refused
    from t2ibench.backends.torch.options import DISPATCHER_ATTENTION

    assert not [c.name for c in configs if "xl" in c.model and c.knobs.options.attention in DISPATCHER_ATTENTION]
    assert not [c.name for c in configs if c.knobs.options.cache and compile_options(c.knobs.options)]
    assert any(k.cache and k.cache.method == "deepcache" for k in knobs)


# -- CUDA ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_quantize_backends_and_group_offload(write_suite, tmp_path):
    fp8 = CUDA and torch.cuda.get_device_capability() >= (8, 9)
    include = [
        {"name": "int8dq", "quantize": "int8dq"},
        {"name": "float8dq", "quantize": "float8dq"},
        {"name": "nf4", "quantize": {"backend": "bitsandbytes", "type": "nf4",
                                     "components": ["denoiser", "text_encoder"]}},
        {"name": "bnb-int8", "quantize": {"backend": "bitsandbytes", "type": "int8"}},
        {"name": "quanto-float8", "quantize": {"backend": "quanto", "type": "float8"}},
        {"name": "group", "offload": "group"},
        {"name": "group-leaf-streams", "offload": {"kind": "group", "level": "leaf", "streams": True}},
        {"name": "fp8-casting", "layerwise_casting": {"storage": "float8_e4m3fn"}},
        {"name": "plain"},
    ]
    path = quick(write_suite, "random:tiny-flux", include=include, defaults={
        "steps": 2, "width": 64, "height": 64, "guidance_scale": 5.0, "precision": "bf16"})
    run_quick(path, tmp_path / "run", device="cuda")
    rows = results_rows(tmp_path / "run")
    expected_done = set(rows) - (set() if fp8 else {"float8dq"})
    assert {n for n, r in rows.items() if r["status"] == "done"} == expected_done, {
        n: r["reason"] for n, r in rows.items()}
    a = {n: applied(rows[n]) for n in expected_done}
    assert a["int8dq"]["quantize"]["transformer"]["Int8Tensor"] > 0
    if fp8:
        assert any("Float8" in k for k in a["float8dq"]["quantize"]["transformer"])
    assert a["nf4"]["quantize"]["transformer"]["Params4bit"] > 0
    assert set(a["nf4"]["quantize"]) == {"config", "transformer", "text_encoder", "text_encoder_2"}
    assert a["bnb-int8"]["quantize"]["transformer"]["Int8Params"] > 0
    assert a["quanto-float8"]["quantize"]["transformer"]["WeightQBytesTensor"] > 0
    assert a["group"]["offload"]["offload_type"] == "block_level"
    assert a["group"]["offload"]["hooks"]["group_offloading"] > 0
    assert a["group"]["offload"]["denoiser_devices"] == ["cpu"]  # between calls the weights wait on the CPU
    assert a["group-leaf-streams"]["offload"]["offload_type"] == "leaf_level"
    assert a["fp8-casting"]["layerwise_casting"]["transformer"]["float8_e4m3fn"] > 0
    px = pixels(tmp_path / "run")
    for name in ("group", "group-leaf-streams"):  # offloading moves weights, it does not change them
        assert np.abs(px[name] - px["plain"]).max() <= 2, name
