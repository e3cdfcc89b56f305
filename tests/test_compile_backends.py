"""compile: {backend: inductor | openvino | tensorrt} on CPU: what cannot compile here is a skip whose reason
says why (for a failing backend: the error and the versions), and the configs around it are unaffected."""

from __future__ import annotations

import importlib.util

import pytest

import t2ibench
from t2ibench.suites.knobs import Knobs


def test_compile_backend_options_keep_old_ids_and_check_their_mode():
    from t2ibench.suites.schema import config_id

    assert config_id("m", Knobs(compile=True)) == config_id("m", Knobs(compile={"backend": "inductor"}))
    assert config_id("m", Knobs(compile=True)) != config_id("m", Knobs(compile={"backend": "openvino"}))
    with pytest.raises(ValueError, match="compile mode 'max-autotune' is inductor's"):
        Knobs(compile={"backend": "openvino", "mode": "max-autotune"})


def test_non_inductor_backends_skip_with_their_reason_on_cpu(write_suite, tmp_path):
    include = [{"name": "plain"}, {"name": "trt", "compile": {"backend": "tensorrt"}},
               {"name": "ov", "compile": {"backend": "openvino"}}]
    path = write_suite(model="random:tiny-sd", prompts=["a red cube"], seeds=[0], include=include,
                       defaults={"steps": 2, "width": 32, "height": 32}, timing={"warmup": 0, "repeats": 1})
    results = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False).results().set_index("config")
    assert results.loc["plain", "status"] == "done"
    assert results.loc["trt", "status"] == "skipped"
    assert "'tensorrt' (torch-tensorrt) needs a CUDA device" in results.loc["trt", "reason"]
    ov = results.loc["ov"]
    if importlib.util.find_spec("openvino") is None:
        assert ov["status"] == "skipped" and "t2ibench[openvino]" in ov["reason"]
    elif ov["status"] == "skipped":  # OpenVINO's backend fails on diffusers' UNet with some torch versions
        import torch

        assert f"failed with torch {torch.__version__} and openvino " in ov["reason"]
    else:
        assert ov["status"] == "done" and ov["compile_ms"] > 0
