"""Matrix expansion, config ids and the resolved suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2ibench.suites import Config, Knobs, Suite, SuiteError, load_suite

BASE = dict(name="t", model="random:tiny-sd", prompts=["a cat", "a dog"], seeds=[0, 1],
            defaults={"steps": 4, "width": 64, "height": 64})


def make(**kw) -> Suite:
    return Suite(**{**BASE, **kw})


def test_no_matrix_is_one_default_config():
    configs = make().configs()
    assert [c.name for c in configs] == ["default"]
    assert configs[0].knobs.steps == 4 and configs[0].model == "random:tiny-sd"
    assert configs[0].knobs.model == "random:tiny-sd"  # fully resolved


def test_matrix_exclude_include_reference_counts_and_order():
    suite = make(
        matrix={"steps": [10, 20, 30], "scheduler": ["euler", "dpmpp_2m"], "precision": ["fp16", "bf16"]},
        exclude=[{"precision": "bf16", "scheduler": "dpmpp_2m"}, {"steps": 30, "precision": "fp16"}],
        include=[{"name": "compiled", "steps": 20, "compile": True}, {"name": "tiny", "vae": "tiny"}],
        reference={"steps": 50, "precision": "fp32"},
    )
    configs = suite.configs()
    # 12 combinations; the first exclude drops 3, the second drops 2 (euler and dpmpp_2m at fp16)
    assert len(configs) == 12 - 3 - 2 + 2 + 1
    assert configs[0].name == "steps=10 scheduler=euler precision=fp16"
    assert configs[1].name == "steps=10 scheduler=euler precision=bf16"
    assert configs[2].name == "steps=10 scheduler=dpmpp_2m precision=fp16"
    assert [c.name for c in configs[-3:]] == ["compiled", "tiny", "reference"]
    assert [c.is_reference for c in configs] == [False] * 9 + [True]
    assert configs[-1].knobs.steps == 50 and configs[-1].knobs.precision == "fp32"
    assert configs[-3].knobs.options.compile is True and configs[-3].knobs.steps == 20
    assert len({c.config_id for c in configs}) == len(configs)
    assert all(len(c.config_id) == 12 and int(c.config_id, 16) >= 0 for c in configs)


def test_exclude_compares_validated_values():
    suite = make(defaults={"guidance_scale": 7}, matrix={"guidance_scale": [5, 7.5]},
                 exclude=[{"guidance_scale": 5.0}])
    assert [c.name for c in suite.configs()] == ["guidance_scale=7.5"]


def test_exclude_everything_is_an_error():
    with pytest.raises(SuiteError, match="exclude: excludes every matrix combination"):
        make(matrix={"steps": [1]}, exclude=[{"steps": 1}])


def test_identical_matrix_and_include_dedupe_and_keep_user_name():
    suite = make(matrix={"steps": [2, 4]}, include=[{"name": "fast", "steps": 2}])
    configs = suite.configs()
    assert [c.name for c in configs] == ["fast", "steps=4"]


def test_reference_equal_to_matrix_config_marks_it():
    configs = make(matrix={"steps": [2, 8]}, reference={"steps": 8}).configs()
    assert [(c.name, c.is_reference) for c in configs] == [("steps=2", False), ("reference", True)]


def test_duplicate_matrix_values_dedupe():
    assert len(make(matrix={"steps": [2, 2], "guidance_scale": [7, 7.0]}).configs()) == 1


def test_compile_empty_mapping_equals_true():
    a = make(defaults={"compile": True}).configs()[0]
    b = make(defaults={"compile": {}}).configs()[0]
    assert a.config_id == b.config_id


def test_config_id_ignores_include_name_and_changes_with_any_knob():
    a = make(include=[{"name": "one", "steps": 3}]).configs()[-1]
    b = make(include=[{"name": "two", "steps": 3}]).configs()[-1]
    assert a.config_id == b.config_id and a.name != b.name
    ids = {a.config_id}
    for change in [{"steps": 5}, {"guidance_scale": 7.0}, {"precision": "fp16"}, {"scheduler": "euler"},
                   {"compile": True}, {"model": "random:tiny-sdxl"}, {"negative_prompt": "blurry"},
                   {"width": 72}, {"vae": "tiny"}, {"attention": "math"}]:
        cid = make(include=[{"name": "one", "steps": 3, **change}]).configs()[-1].config_id
        assert cid not in ids, change
        ids.add(cid)
    # the suite's model is part of the id
    assert make(model="random:sd15", include=[{"name": "one", "steps": 3}]).configs()[-1].config_id not in ids


def test_config_ids_stable_across_processes():
    suite = load_suite("smoke")
    here = {c.name: c.config_id for c in suite.configs()}
    code = ("import json; from t2ibench.suites import load_suite; "
            "print(json.dumps({c.name: c.config_id for c in load_suite('smoke').configs()}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout
    assert json.loads(out) == here
    # and pinned: a change here changes every stored run's ids, so it must be deliberate
    config = Config(name="x", model="random:tiny-sd", knobs=Knobs(steps=4, width=64, height=64,
                                                                  model="random:tiny-sd"))
    assert config.config_id == GOLDEN_ID


GOLDEN_ID = "c0c8ea7dc568"


def test_config_rejects_wrong_id():
    with pytest.raises(ValueError, match="does not match"):
        Config(config_id="000000000000", name="x", model="m", knobs=Knobs())


def test_load_key_groups_runtime_knobs():
    configs = make(matrix={"steps": [2, 4], "scheduler": ["euler", "ddim"], "precision": ["fp32", "fp16"]}).configs()
    keys = {c.load_key() for c in configs}
    # (model, precision, vae, offload, quantize, layerwise_casting, base, backend): the runtime knobs are not in it
    assert keys == {("random:tiny-sd", p, "default", "none", None, None, None, "torch") for p in ("fp32", "fp16")}


def test_include_can_override_model():
    config = make(include=[{"name": "xl", "model": "random:tiny-sdxl"}]).configs()[-1]
    assert config.model == "random:tiny-sdxl" and config.load_key()[0] == "random:tiny-sdxl"


def test_include_name_clashing_with_default_is_an_error():
    with pytest.raises(SuiteError, match=r"include\[0\].name: 'default' is also the name of a matrix config"):
        make(include=[{"name": "default", "steps": 3}])


def test_seed_range_and_duplicates():
    assert make(seeds={"count": 3, "start": 10}).seed_list() == [10, 11, 12]
    with pytest.raises(SuiteError, match=r"seeds\[2\]: duplicate seed 0 \(also seeds\[0\]\)"):
        make(seeds=[0, 1, 0])


def test_metrics_list_and_mapping_forms():
    from t2ibench.metrics import METRIC_OPTIONS

    a = make(metrics=["clip_score", "fid"], reference={"steps": 8})
    b = make(metrics={"clip_score": None, "fid": {"against": "reference"}}, reference={"steps": 8})
    assert a.metrics == b.metrics
    assert isinstance(a.metrics["fid"], METRIC_OPTIONS["fid"]) and a.metrics["fid"].against == "reference"


def test_resolved_is_json_and_complete(tmp_path):
    suite = load_suite("smoke")
    resolved = json.loads(json.dumps(suite.resolved()))
    assert resolved["name"] == "smoke"
    assert len(resolved["prompts"]) == 4 and resolved["prompts"][0]["prompt_id"].startswith("p")
    assert resolved["seeds"] == [0, 1]
    assert [c["config_id"] for c in resolved["configs"]] == [c.config_id for c in suite.configs()]
    assert resolved["metrics"]["fid"]["features"] == "random:inception"
    assert resolved["source_path"].endswith("smoke.yaml")


def test_equality_ignores_source_path(tmp_path):
    a = load_suite("smoke")
    copy = tmp_path / "copy.yaml"
    copy.write_text(a.source_path.read_text())
    b = load_suite(copy)
    assert a == b and hash(a) == hash(b) and a.source_path != b.source_path


def test_suite_is_frozen():
    suite = make()
    with pytest.raises(Exception):
        suite.name = "other"


def test_model_copy_with_update_drops_cached_configs():
    suite = make(matrix={"steps": [2, 4]})
    assert len(suite.configs()) == 2
    assert len(suite.model_copy(update={"matrix": {"steps": [2, 4, 6]}}).configs()) == 3


def test_a_loaded_suite_keeps_the_configs_and_prompts_validation_built(write_suite, monkeypatch):
    import t2ibench.suites.expand as expand_module
    import t2ibench.suites.prompts as prompts_module

    calls = {"expand": 0, "prompts": 0}
    real_expand, real_resolve = expand_module.expand, prompts_module.resolve_prompts

    def counted_expand(data):
        calls["expand"] += 1
        return real_expand(data)

    def counted_resolve(*args, **kwargs):
        calls["prompts"] += 1
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(expand_module, "expand", counted_expand)
    monkeypatch.setattr(prompts_module, "resolve_prompts", counted_resolve)
    suite = load_suite(write_suite(matrix={"steps": [2, 3]}))
    assert len(suite.configs()) == 2 and len(suite.prompt_list()) == 3
    suite.configs(), suite.prompt_list()
    assert calls == {"expand": 1, "prompts": 1}
