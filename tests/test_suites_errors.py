"""Bad suites: every error names the file, the line, the key path, and suggests a fix."""

from __future__ import annotations

import textwrap

import pytest

from t2ibench.errors import UserError
from t2ibench.suites import Suite, SuiteError, load_suite

GOOD = """\
name: t
model: random:tiny-sd
prompts: [a cat, a dog]
seeds: [0, 1]
defaults:
  steps: 4
  width: 64
  height: 64
matrix:
  scheduler: [euler, ddim]
  steps: [2, 4]
reference: {steps: 8}
metrics: [clip_score, fid]
objectives: {latency_ms_p50: min, clip_score: max}
"""


def errors_of(tmp_path, monkeypatch, text: str, name: str = "suite.yaml") -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(textwrap.dedent(text))
    with pytest.raises(UserError) as info:
        load_suite(name)
    err = info.value
    assert isinstance(err, SuiteError)
    assert str(err) == "\n".join(err.problems)
    return err.problems


def one_error(tmp_path, monkeypatch, text: str) -> str:
    problems = errors_of(tmp_path, monkeypatch, text)
    assert len(problems) == 1, problems
    return problems[0]


def test_good_suite_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite.yaml").write_text(GOOD)
    suite = load_suite("suite.yaml")
    assert len(suite.configs()) == 5


def test_typo_top_level_key(tmp_path, monkeypatch):
    text = GOOD.replace("seeds: [0, 1]", "seed: [0, 1]")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:4: seed: unknown key 'seed' (did you mean 'seeds'?)"


def test_typo_knob_in_defaults(tmp_path, monkeypatch):
    text = GOOD.replace("  steps: 4\n", "  stpes: 4\n")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:6: defaults.stpes: unknown knob 'stpes' (did you mean 'steps'?)"


def test_wrong_type(tmp_path, monkeypatch):
    text = GOOD.replace("  steps: 4\n", '  steps: "ten"\n')
    assert one_error(tmp_path, monkeypatch, text) == (
        "suite.yaml:6: defaults.steps: input should be a valid integer, "
        "unable to parse string as an integer (got 'ten')")


def test_negative_steps(tmp_path, monkeypatch):
    text = GOOD.replace("  steps: [2, 4]", "  steps: [2, -4]")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:11: matrix.steps[1]: input should be greater than 0 (got -4)"


def test_unknown_scheduler_in_matrix(tmp_path, monkeypatch):
    text = GOOD.replace("[euler, ddim]", "[euler, eulr]")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:10: matrix.scheduler[1]: unknown value 'eulr' (did you mean 'euler'?)"


def test_unknown_scheduler_in_block_list_points_at_item(tmp_path, monkeypatch):
    text = GOOD.replace("  scheduler: [euler, ddim]", "  scheduler:\n    - euler\n    - dpmpp2m")
    # the steps line moves down by two
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:12: matrix.scheduler[1]: unknown value 'dpmpp2m' (did you mean 'dpmpp_2m'?)"


def test_missing_prompt_file(tmp_path, monkeypatch):
    text = GOOD.replace("prompts: [a cat, a dog]", "prompts: {source: prompts.txt}")
    assert one_error(tmp_path, monkeypatch, text) == \
        f"suite.yaml:3: prompts.source: prompt file not found: {tmp_path.resolve() / 'prompts.txt'}"


def test_yaml_syntax_error(tmp_path, monkeypatch):
    text = GOOD.replace("prompts: [a cat, a dog]", "prompts: [a cat, a dog")
    assert one_error(tmp_path, monkeypatch, text) == (
        "suite.yaml:4: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 3)")


def test_yaml_duplicate_key(tmp_path, monkeypatch):
    text = GOOD + "seeds: [3]\n"
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:15: seeds: duplicate key 'seeds' (first at line 4)"


def test_empty_matrix_list(tmp_path, monkeypatch):
    text = GOOD.replace("  steps: [2, 4]", "  steps: []")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:11: matrix.steps: empty list; give at least one value"


def test_duplicate_include_names(tmp_path, monkeypatch):
    text = GOOD + "include:\n  - {name: fast, steps: 1}\n  - {name: fast, steps: 3}\n"
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:17: include[1].name: duplicate include name 'fast' (also include[0])"


def test_include_without_name(tmp_path, monkeypatch):
    text = GOOD + "include:\n  - {steps: 1}\n"
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:16: include[0]: missing 'name'; every include entry needs a unique name"


def test_named_configs_with_same_knobs(tmp_path, monkeypatch):
    text = GOOD + "include:\n  - {name: a, steps: 3}\n  - {name: b, steps: 3}\n"
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:17: include[1]: same model and knobs as 'a' (include[0]); named configs must differ"


def test_unknown_metric(tmp_path, monkeypatch):
    text = GOOD.replace("metrics: [clip_score, fid]", "metrics: [clip_score, fdi]")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:13: metrics[1]: unknown metric 'fdi' (did you mean 'fid'?)"


def test_bad_metric_option(tmp_path, monkeypatch):
    text = GOOD.replace("metrics: [clip_score, fid]",
                        "metrics:\n  clip_score: {}\n  fid: {agaisnt: reference, resize: bilinaer}")
    assert errors_of(tmp_path, monkeypatch, text) == [
        "suite.yaml:15: metrics.fid.resize: unknown value 'bilinaer' (did you mean 'bilinear'?)",
        "suite.yaml:15: metrics.fid.agaisnt: unknown key 'agaisnt' (did you mean 'against'?)",
    ]


def test_metric_against_reference_without_reference(tmp_path, monkeypatch):
    text = GOOD.replace("reference: {steps: 8}\n", "")
    assert one_error(tmp_path, monkeypatch, text) == (
        "suite.yaml:12: metrics[1]: compares against the reference config, but the suite has no "
        "'reference'; add one, or set 'against' to a folder or .npz")


def test_bad_objective_direction(tmp_path, monkeypatch):
    text = GOOD.replace("latency_ms_p50: min", "latency_ms_p50: minimum")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:14: objectives.latency_ms_p50: unknown value 'minimum' (did you mean 'min'?)"


def test_objective_on_unknown_column(tmp_path, monkeypatch):
    text = GOOD.replace("latency_ms_p50: min", "latency_p50: min")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:14: objectives.latency_p50: unknown column 'latency_p50' (did you mean 'latency_ms_p50'?)"


def test_width_not_multiple_of_8(tmp_path, monkeypatch):
    text = GOOD.replace("  width: 64", "  width: 100")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:7: defaults.width: must be a multiple of 8, got 100"


def test_seeds_count_zero(tmp_path, monkeypatch):
    text = GOOD.replace("seeds: [0, 1]", "seeds: {count: 0}")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:4: seeds.count: input should be greater than or equal to 1 (got 0)"


def test_unknown_parti_category(tmp_path, monkeypatch):
    text = GOOD.replace("prompts: [a cat, a dog]",
                        "prompts:\n  source: parti\n  categories: [Vehicles, Animal]")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:5: prompts.categories[1]: unknown category 'Animal' (did you mean 'Animals'?)"


def test_compile_bad_value(tmp_path, monkeypatch):
    text = GOOD + "include:\n  - {name: c, compile: {mode: max-autotun, fulgraph: true}}\n"
    assert errors_of(tmp_path, monkeypatch, text) == [
        "suite.yaml:16: include[0].compile.mode: unknown value 'max-autotun' (did you mean 'max-autotune'?)",
        "suite.yaml:16: include[0].compile.fulgraph: unknown key 'fulgraph' (did you mean 'fullgraph'?)",
    ]


def test_bad_name_and_missing_model(tmp_path, monkeypatch):
    text = GOOD.replace("name: t", "name: My Suite").replace("model: random:tiny-sd\n", "")
    assert errors_of(tmp_path, monkeypatch, text) == [
        "suite.yaml:1: name: string should match pattern '^[a-z0-9_-]+$' (got 'My Suite')",
        "suite.yaml:1: model: required key is missing",
    ]


def test_all_problems_in_one_pass(tmp_path, monkeypatch):
    text = """\
    name: t
    modle: x
    model: m
    prompts: [a]
    defaults: {steps: "ten", width: 100}
    matrix:
      scheduler: [eulr]
      steps: []
    include:
      - {steps: 3}
    metrics: [fdi]
    """
    assert errors_of(tmp_path, monkeypatch, text) == [
        "suite.yaml:2: modle: unknown key 'modle' (did you mean 'model'?)",
        "suite.yaml:5: defaults.steps: input should be a valid integer, unable to parse string as an integer (got 'ten')",
        "suite.yaml:5: defaults.width: must be a multiple of 8, got 100",
        "suite.yaml:7: matrix.scheduler[0]: unknown value 'eulr' (did you mean 'euler'?)",
        "suite.yaml:8: matrix.steps: empty list; give at least one value",
        "suite.yaml:10: include[0]: missing 'name'; every include entry needs a unique name",
        "suite.yaml:11: metrics[0]: unknown metric 'fdi' (did you mean 'fid'?)",
    ]


def test_empty_file(tmp_path, monkeypatch):
    assert one_error(tmp_path, monkeypatch, "") == \
        "suite.yaml:1: a suite must be a mapping with keys name, model, prompts, ... (got an empty file)"


def test_unknown_builtin_name():
    with pytest.raises(UserError) as info:
        load_suite("smok")
    assert str(info.value) == ("unknown suite 'smok' (did you mean 'smoke'?); builtin suites: "
                               "deploy-2026, sd15-deploy, sdxl-deploy, sdxl-mlperf, sdxl-upscale, smoke (or give the path of a .yaml file)")


def test_missing_suite_path(tmp_path):
    with pytest.raises(UserError, match="suite file not found: .*nope.yaml"):
        load_suite(tmp_path / "nope.yaml")


def test_python_built_suite_reports_key_paths():
    with pytest.raises(SuiteError) as info:
        Suite(name="x", model="m", prompts=["a"], matrix={"steps": [1, "x"]})
    assert str(info.value) == \
        "matrix.steps[1]: input should be a valid integer, unable to parse string as an integer (got 'x')"


def test_compile_scalar_value(tmp_path, monkeypatch):
    text = GOOD.replace("  height: 64\n", "  height: 64\n  compile: fast\n")
    assert one_error(tmp_path, monkeypatch, text) == \
        "suite.yaml:9: defaults.compile: expected true, false or {mode: ..., fullgraph: ...} (got 'fast')"


def test_constraint_and_gate_problems(tmp_path, monkeypatch):
    text = GOOD + "constraints: {peak_vram_mb: {}}\ngates: {clip_score: lots, latency_ms_p50: '5%'}\n"
    assert errors_of(tmp_path, monkeypatch, text) == [
        "suite.yaml:15: constraints.peak_vram_mb: give min, max or both",
        "suite.yaml:16: gates.clip_score: expected a relative tolerance like '5%' or an absolute number (got 'lots')",
    ]


def test_timing_counts_are_bounded(tmp_path, monkeypatch):
    """A typo such as `repeats: 1000` would run each image a thousand times: refused with its line."""
    problems = errors_of(tmp_path, monkeypatch, GOOD + "timing: {warmup: 1, repeats: 1000}\n")
    assert len(problems) == 1
    assert "suite.yaml:" in problems[0] and "timing.repeats" in problems[0] and "100" in problems[0]
