"""Every builtin suite loads, expands and resolves its prompts."""

from __future__ import annotations

import pytest

from t2ibench.suites import builtin_suites, load_suite


def test_builtin_names():
    assert list(builtin_suites()) == ["deploy-2026", "sd15-deploy", "sdxl-deploy", "sdxl-mlperf", "sdxl-upscale", "smoke"]


@pytest.mark.parametrize("name", list(builtin_suites()))
def test_builtin_loads(name):
    suite = load_suite(name)
    assert suite.name == name
    assert suite.configs() and suite.prompt_list() and suite.seed_list()
    assert suite.description
    assert suite == load_suite(builtin_suites()[name])


def test_smoke_is_small():
    suite = load_suite("smoke")
    configs = suite.configs()
    assert suite.model == "random:tiny-sd"
    assert len(suite.prompt_list()) == 4 and suite.seed_list() == [0, 1]
    assert len(configs) == 5 and sum(c.is_reference for c in configs) == 1
    assert all(c.knobs.width == 64 and c.knobs.height == 64 and c.knobs.steps <= 8 for c in configs)
    assert all(opts_value.startswith("random:") for opts in suite.metrics.values()
               for key, opts_value in opts.model_dump().items() if key in ("model", "net", "features"))
    assert suite.objectives == {"latency_ms_p50": "min", "clip_score": "max"}


def test_mlperf_settings():
    suite = load_suite("sdxl-mlperf")
    (config,) = suite.configs()
    k = config.knobs
    assert (k.scheduler, k.steps, k.guidance_scale, k.width, k.height) == ("euler", 20, 8.0, 1024, 1024)
    # the .npz resolves against the suite's folder when the suite loads; validate and run check it exists
    assert suite.metrics["fid"].against == str(suite.source_path.parent / "coco2014-val-5k.npz")
    assert suite.metrics["clip_score"].model == "ViT-B-32"


def test_builtin_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "smoke").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_suite("smoke").name == "smoke"
