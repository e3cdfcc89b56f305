"""Each runtime knob observably changes the pipeline during the call, and is undone for the next config
of the same load group. Observed: the scheduler in use, the attention processors and the SDPA backend
torch selects, parameter dtypes, memory format, the VAE class and its flags, the text passed to the encoder (``observed``: conftest.py)."""

from __future__ import annotations

import itertools

import torch

import t2ibench
from t2ibench.backends.torch.engine import TorchBackend
from t2ibench.suites.knobs import SCHEDULERS


def quick_suite(write_suite, **overrides):
    return write_suite(**{"prompts": ["a red cube"], "seeds": [0], "timing": {"warmup": 0, "repeats": 1},
                          "defaults": {"steps": 3, "width": 64, "height": 64, "guidance_scale": 5.0}, **overrides})


def test_scheduler_knob_builds_each_scheduler_from_the_model_config(observed, write_suite, tmp_path):
    path = quick_suite(write_suite, matrix={"scheduler": list(SCHEDULERS)}, include=[{"name": "own", "steps": 2}])
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    assert set(run.results()["n_ok"]) == {1}
    used = {c.knobs.scheduler: c.scheduler for c in observed}
    expected = {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "lms": "LMSDiscreteScheduler",
                "euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
                "heun": "HeunDiscreteScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler",
                "dpmpp_2m_karras": "DPMSolverMultistepScheduler", "dpmpp_sde": "DPMSolverSDEScheduler",
                "unipc": "UniPCMultistepScheduler", "lcm": "LCMScheduler",
                None: "EulerDiscreteScheduler"}  # no knob: the pipeline's own scheduler again
    assert {k: type(s).__name__ for k, s in used.items()} == expected
    for s in used.values():  # the model's noise schedule carries over into every scheduler
        assert (s.config.beta_schedule, s.config.beta_start, s.config.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert used["dpmpp_2m"].config.algorithm_type == used["dpmpp_2m_karras"].config.algorithm_type == "dpmsolver++"
    assert used["dpmpp_2m"].config.solver_order == 2
    assert not used["dpmpp_2m"].config.use_karras_sigmas and used["dpmpp_2m_karras"].config.use_karras_sigmas
    assert used["dpmpp_sde"].config.use_karras_sigmas and used["pndm"].config.skip_prk_steps
    assert all(used[k] is not used[None] for k in SCHEDULERS)  # fresh instances, the original is kept intact
    images = {p.read_bytes() for p in (run.run_dir / "images").rglob("*.png")}
    assert len(images) == len(SCHEDULERS) + 1  # every scheduler changes the pixels


def test_flow_matching_models_take_only_flow_schedulers():
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2ibench.errors import SkipConfig
    from t2ibench.backends.torch.schedulers import build_scheduler

    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)
    built = {}
    for name in SCHEDULERS:
        try:
            built[name] = type(build_scheduler(name, flow)).__name__
        except SkipConfig as e:
            assert "does not fit the flow-matching model" in str(e)
    assert built == {"euler": "FlowMatchEulerDiscreteScheduler", "heun": "FlowMatchHeunDiscreteScheduler"}
    assert build_scheduler("euler", flow).config.shift == 3.0


def test_attention_knob_changes_processors_and_sdpa_backend_and_is_undone(observed, write_suite, tmp_path):
    from torch.nn.attention import SDPBackend

    path = quick_suite(write_suite, matrix={"attention": ["sliced", "sdpa", "math", "flash", "efficient", "xformers"]},
                       include=[{"name": "sdpa-again", "attention": "sdpa", "steps": 2}])
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("config")
    assert [c.knobs.options.attention for c in observed] == ["sliced", "sdpa", "math", "sdpa"]  # in config order
    sliced, sdpa, math, again = observed
    assert sliced.processors == {"SlicedAttnProcessor": 8}
    assert sdpa.processors == math.processors == again.processors == {"AttnProcessor2_0": 8}
    assert sliced.vae_processors == sdpa.vae_processors == {"AttnProcessor2_0": 2}
    # sliced attention leaves the UNet's SDPA calls; only the VAE's remain
    assert 0 < len(sliced.sdpa) < len(sdpa.sdpa) == len(math.sdpa)
    assert set(sdpa.sdpa) == set(again.sdpa) == {SDPBackend.FLASH_ATTENTION}  # torch's CPU default
    assert set(math.sdpa) == {SDPBackend.MATH}
    for knob, why in [("flash", "CUDA"), ("efficient", "CUDA"), ("xformers", "pip install 't2ibench[xformers]'")]:
        if knob == "xformers" and results.loc["attention=xformers", "status"] != "skipped":
            continue  # xformers is installed here
        assert results.loc[f"attention={knob}", "status"] == "skipped"
        assert why in results.loc[f"attention={knob}", "reason"]


def test_precision_memory_format_and_vae_knobs_apply_and_are_undone(observed, write_suite, tmp_path, monkeypatch):
    loads = []
    real_load = TorchBackend.load
    monkeypatch.setattr(TorchBackend, "load", lambda self, model, knobs, device, **kw:
                        loads.append((knobs.precision, knobs.vae)) or real_load(self, model, knobs, device, **kw))
    include = [  # in each load group, a config with a knob on is followed by one with it off
        {"name": "cl-slice-tile", "channels_last": True, "vae_slicing": True, "vae_tiling": True},
        {"name": "plain", "guidance_scale": 4.0},
        {"name": "bf16-upcast", "precision": "bf16", "vae_upcast": True},
        {"name": "bf16", "precision": "bf16"},
        {"name": "tiny-sliced", "vae": "tiny", "vae_slicing": True},
        {"name": "tiny", "vae": "tiny", "guidance_scale": 4.0},
        {"name": "tiny-bf16", "vae": "tiny", "precision": "bf16"},
    ]
    path = quick_suite(write_suite, include=include)
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    assert set(run.results()["n_ok"]) == {1}
    # the model reloads only when the load key (model, precision, vae, offload) changes
    assert sorted(loads) == sorted([("fp32", "default"), ("bf16", "default"), ("fp32", "tiny"), ("bf16", "tiny")])

    for c in observed:  # what each call ran with is exactly what its own knobs say
        k, dtype = c.knobs, {"fp32": torch.float32, "bf16": torch.bfloat16}[c.knobs.precision]
        assert c.unet_channels_last == c.vae_channels_last == k.options.channels_last != c.unet_contiguous
        assert (c.vae_slicing, c.vae_tiling) == (k.vae_slicing, k.vae_tiling)
        assert c.vae_cls == ("AutoencoderTiny" if k.vae == "tiny" else "AutoencoderKL")
        assert c.unet_dtype == dtype
        assert c.vae_dtype == c.decoder_input_dtypes[0] == (torch.float32 if k.options.vae_upcast else dtype)
    order = [c.knobs for c in observed]
    for knob in ("channels_last", "vae_slicing", "vae_tiling", "vae_upcast"):
        assert any(a.knob(knob) and not b.knob(knob) and (a.precision, a.vae) == (b.precision, b.vae)
                   for a, b in itertools.pairwise(order)), f"no config undoes {knob} in its load group"


def test_scheduler_registry_matches_the_knob_literal():
    from t2ibench.backends.torch.schedulers import SCHEDULERS as RECIPES

    assert set(RECIPES.names()) == set(SCHEDULERS)
