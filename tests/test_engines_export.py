"""The export engines (openvino, onnxruntime) run a tiny SD pipeline end to end, through the real ``t2ibench.run``.

Independent truth: the torch backend's images for the same prompts and seeds (fp32 in both), the timing
invariants of every call, the export cache found again by a second run, and the size of int8-compressed weights.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

import t2ibench
from t2ibench.errors import SkipConfig

HAS_OV = importlib.util.find_spec("openvino") is not None
HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
pytestmark = pytest.mark.skipif(not (HAS_OV and HAS_ORT), reason="needs pip install 't2ibench[openvino,onnx]'")

STEPS = 3
CONFIGS = [
    {"name": "torch"},
    {"name": "ov-f32", "backend": "openvino", "inference_precision": "f32"},
    {"name": "ov-f32-static", "backend": "openvino", "inference_precision": "f32", "static_shapes": True},
    {"name": "ov-int8", "backend": "openvino", "inference_precision": "f32", "weight_compression": "int8"},
    {"name": "ort", "backend": "onnxruntime"},
    {"name": "ort-tensorrt", "backend": "onnxruntime", "provider": "tensorrt"},
    {"name": "ort-io-binding-cpu", "backend": "onnxruntime", "io_binding": True},
    {"name": "ov-gpu", "backend": "openvino", "device": "GPU"},
    {"name": "torch-ddim", "scheduler": "ddim"},  # integer timesteps (the export was traced with euler's floats)
    {"name": "ort-ddim", "backend": "onnxruntime", "scheduler": "ddim"},
]
CACHED = ("ov-f32", "ov-int8", "ort")  # the second run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, write_suite_module):
    """The same suite run twice in a fresh export cache: the first run exports, the second finds the exports."""
    cache = tmp_path_factory.mktemp("export-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("T2IBENCH_CACHE", str(cache))
        cold = t2ibench.run(write_suite_module(CONFIGS), out=tmp_path_factory.mktemp("cold"), device="cpu",
                            metrics=False)
        again = [c for c in CONFIGS if c["name"] in CACHED]
        hot = t2ibench.run(write_suite_module(again), out=tmp_path_factory.mktemp("hot"), device="cpu", metrics=False)
    return cold, hot, cache


@pytest.fixture(scope="module")
def write_suite_module(tmp_path_factory):
    import yaml

    from conftest import suite_dict

    def write(configs: list[dict]):
        path = tmp_path_factory.mktemp("suite") / "engines.yaml"
        data = suite_dict(name="engines", prompts=["a red cube on a table", "a lighthouse at dusk"], seeds=[0],
                          include=configs, timing={"warmup": 0, "repeats": 1})
        data["defaults"]["steps"] = STEPS
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def _results(run):
    return run.results().set_index("config")


def _images(run, config: str) -> dict:
    cells = run.cells()
    mine = cells[(cells["config"] == config) & (cells["status"] == "ok")]
    return {(r.prompt_id, r.seed): np.asarray(Image.open(run.run_dir / r.image_path), dtype=np.float64)
            for r in mine.itertuples()}


def _diff(run, a: str, b: str) -> tuple[float, float]:
    ia, ib = _images(run, a), _images(run, b)
    assert ia.keys() == ib.keys() and len(ia) == 2
    d = np.abs(np.stack([ia[k] for k in ia]) - np.stack([ib[k] for k in ia]))
    return float(d.mean()), float(d.max())


@pytest.mark.parametrize("config,torch_config", [("ov-f32", "torch"), ("ov-f32-static", "torch"), ("ort", "torch"),
                                                 ("ort-ddim", "torch-ddim")])
def test_fp32_images_are_close_to_the_torch_backend(runs, config, torch_config):
    """Same prompts and seeds, fp32 everywhere: the exported pipelines reproduce torch's pixels (0..255).

    Measured on the 2-core dev box (64x64, 3 steps, 2 images, 24576 values): ov-f32 mean 0.00004 max 1 (one value
    off by one), ov-f32-static 0 and 0, ort mean 0.00004 max 1, ort-ddim 0 and 0. The bound leaves room for
    another CPU's kernels; OpenVINO's default bf16 on this CPU gives mean 0.9 max 8."""
    cold, _, _ = runs
    mean, max_ = _diff(cold, torch_config, config)
    print(f"{config}: mean {mean:.6f} max {max_:.0f}")
    assert mean < 0.05 and max_ <= 3


def test_int8_weights_change_the_images_a_little_and_shrink_the_ir(runs):
    """int8 weight compression (nncf): the UNet's IR weights are under half the f32 size, the images stay near."""
    cold, _, cache = runs
    applied = json.loads(_results(cold).loc["ov-int8", "applied"])
    assert applied["openvino"]["unet"]["weight_compression"] == "int8"
    sizes = {}
    for name in ("ov-f32", "ov-int8"):
        key = json.loads(_results(cold).loc[name, "applied"])["export"]["key"]
        sizes[name] = (cache / "exports" / "openvino" / key / "unet" / "model.bin").stat().st_size
    assert sizes["ov-int8"] < 0.5 * sizes["ov-f32"]
    mean, _ = _diff(cold, "torch", "ov-int8")
    print(f"ov-int8: mean {mean:.4f} max {_diff(cold, 'torch', 'ov-int8')[1]:.0f}")
    assert mean < 5  # measured mean 0.61 max 5 (random weights)


@pytest.mark.parametrize("config", ["ov-f32", "ov-f32-static", "ov-int8", "ort"])
def test_phases_partition_each_call_and_memory_is_measured(runs, config):
    cold, _, _ = runs
    cells = cold.cells()
    mine = cells[(cells["config"] == config) & (cells["status"] == "ok")]
    assert len(mine) == 2
    for r in mine.itertuples():
        steps = json.loads(r.step_ms)
        assert len(steps) == STEPS and all(s > 0 for s in steps)
        assert r.encode_ms > 0 and r.decode_ms > 0
        assert r.encode_ms + r.denoise_ms + r.decode_ms == pytest.approx(r.latency_ms, rel=1e-9)
        assert sum(steps) == pytest.approx(r.denoise_ms, abs=1e-3 * STEPS)  # cells.csv rounds step_ms to 1e-4
        assert r.peak_rss_mb > 0


def test_what_the_engine_ran_is_recorded(runs):
    cold, _, _ = runs
    results = _results(cold)
    ov = json.loads(results.loc["ov-f32", "applied"])["openvino"]
    assert set(ov) == {"text_encoder", "unet", "vae"}
    assert all(v["inference_precision"] == "f32" and v["devices"] == ["CPU"] for v in ov.values())
    static = json.loads(results.loc["ov-f32-static", "applied"])["openvino"]["unet"]["static_shapes"]
    assert static[0] == [2, 4, 8, 8]  # guidance doubles the batch; 64 px / 8
    ort = json.loads(results.loc["ort", "applied"])["onnxruntime"]
    assert all(v["providers"][0] == "CPUExecutionProvider" for v in ort.values())


def test_second_run_finds_the_exports_in_the_cache(runs):
    cold, hot, _ = runs
    for config in CACHED:
        first, second = _results(cold).loc[config], _results(hot).loc[config]
        assert not json.loads(first["applied"])["export"]["cache_hit"]
        assert json.loads(second["applied"])["export"]["cache_hit"]
        print(f"{config}: export_ms cold {first['export_ms']:.0f}, cached {second['export_ms']:.2f}")
        assert second["export_ms"] < 100 < first["export_ms"]  # measured: 7-19 s cold, 0.3 ms cached
        assert second["load_ms"] < first["load_ms"]
    # the cache hit gives the same pixels
    assert _images(cold, "ort").keys() == _images(hot, "ort").keys()
    for k, v in _images(cold, "ort").items():
        assert np.array_equal(v, _images(hot, "ort")[k])


def test_what_cannot_run_here_is_skipped_with_its_reason(runs):
    import onnxruntime as ort
    import openvino as ov

    results = _results(runs[0])
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        assert results.loc["ort-tensorrt", "status"] == "skipped"
        assert "provider tensorrt" in results.loc["ort-tensorrt", "reason"]
    assert results.loc["ort-io-binding-cpu", "status"] == "skipped"
    assert "io_binding" in results.loc["ort-io-binding-cpu", "reason"]
    if not any(d.startswith("GPU") for d in ov.Core().available_devices):
        assert results.loc["ov-gpu", "status"] == "skipped"
        assert "device GPU is not available" in results.loc["ov-gpu", "reason"]


@pytest.mark.parametrize("backend,module,extra", [("openvino", "openvino", "openvino"),
                                                  ("onnxruntime", "onnxruntime", "onnx")])
def test_a_missing_package_is_a_skip_that_names_the_extra(backend, module, extra, monkeypatch):
    from t2ibench.backends import BACKENDS
    from t2ibench.suites.knobs import Knobs

    monkeypatch.setitem(sys.modules, module, None)  # find_spec then answers None: "not installed"
    knobs = Knobs(backend=backend, steps=2, width=32, height=32)
    spec = BACKENDS.get(backend)
    with pytest.raises(SkipConfig, match=rf"pip install 't2ibench\[{extra}\]'"):
        spec.make_engine().load("random:tiny-sd", knobs, "cpu")
    [finding] = spec.check_config("random:tiny-sd", knobs, "cpu")
    assert finding.level == "skip" and f"t2ibench[{extra}]" in finding.message


def test_other_precisions_and_vae_slicing_are_skipped_by_the_preflight_and_the_engine():
    from t2ibench.backends import BACKENDS
    from t2ibench.suites.knobs import Knobs

    for backend in ("openvino", "onnxruntime"):
        knobs = Knobs(backend=backend, precision="fp16", vae_tiling=True)
        findings = BACKENDS.get(backend).check_config("random:tiny-sd", knobs, "cpu")
        assert [(f.level, f.knob) for f in findings] == [("skip", "precision"), ("skip", "vae_tiling")]
        with pytest.raises(SkipConfig, match="exports the fp32 model"):
            BACKENDS.get(backend).make_engine().load("random:tiny-sd", knobs, "cpu")


@pytest.mark.parametrize("backend,extra", [("openvino", {"inference_precision": "f32"}), ("onnxruntime", {})])
def test_profile_traces_one_call_with_the_engine_profiler(runs, backend, extra, tmp_path, monkeypatch):
    """onnxruntime's session profiling and OpenVINO's per-layer counters: the trace parses, every network's
    operators are there, the UNet's convolutions ran a multiple of the steps, and the calls after are unchanged."""
    import gzip
    import time

    from t2ibench.backends import BACKENDS
    from t2ibench.suites.knobs import Knobs

    monkeypatch.setenv("T2IBENCH_CACHE", str(runs[2]))  # the module's exports
    knobs = Knobs(backend=backend, steps=STEPS, width=64, height=64, guidance_scale=5.0, **extra)
    model = BACKENDS.get(backend).make_engine().load("random:tiny-sd", knobs, "cpu")
    try:
        assert model.export_info.cache_hit
        model.configure(knobs)
        before = model.generate(["a red cube"], [0], knobs).images[0].pixels
        t0 = time.perf_counter()
        ops = model.profile(["a red cube"], [0], knobs, tmp_path / "trace.json.gz")
        wall_ms = (time.perf_counter() - t0) * 1000.0
        after = model.generate(["a red cube"], [0], knobs).images[0].pixels
    finally:
        model.close()
    with gzip.open(tmp_path / "trace.json.gz", "rt") as f:
        events = json.load(f)["traceEvents"]
    assert any(e.get("ph") == "X" for e in events)
    assert ops == sorted(ops, key=lambda o: (-o.self_ms, o.name)) and all(o.self_ms >= 0 for o in ops)
    assert {o.name.split(":")[0] for o in ops} == {"text_encoder", "unet", "vae"}
    unet = [o for o in ops if o.name.startswith("unet:")]
    convolutions = [o for o in unet if "Conv" in o.name]  # (OpenVINO runs shape nodes only when shapes change)
    assert convolutions and all(o.calls % STEPS == 0 for o in convolutions)
    assert sum(o.self_ms for o in ops) < wall_ms  # the operators ran inside the profiled call
    assert np.array_equal(before, after)


def test_scoring_after_an_export_engine_ran_decodes_without_forking(runs, tmp_path):
    """After the openvino and onnxruntime engines ran in this process, a loader worker forked from it would
    segfault (their thread pools do not survive a fork; it once crashed the whole test session): scoring with
    workers asked for decodes in this process instead, with the same features."""
    from t2ibench.metrics import networks
    from t2ibench.metrics.features import extract, fork_unsafe_engines

    assert set(fork_unsafe_engines()) == {"openvino", "onnxruntime"}
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(paths[-1])
    ext = networks.load_features("random:inception")
    with_workers = extract(paths, ext, num_workers=2, batch_size=2)
    assert np.array_equal(with_workers, extract(paths, ext, num_workers=0, batch_size=2))
