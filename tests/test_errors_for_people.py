"""Error messages and help written for people (issue 18): did-you-mean everywhere, every typo at once,
shorthands that read as the README says, readable names and counts, and help with an example per verb."""

from __future__ import annotations

import argparse
import json
import re
import textwrap
import types

import numpy as np
import pytest

from t2ibench import cli
from t2ibench.suites import load_suite


def _write(tmp_path, text: str, name: str = "suite.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- help -----------------------------------------------------------------------------------------

def _verb_parsers(parser: argparse.ArgumentParser, path: tuple = ()) -> dict[tuple, argparse.ArgumentParser]:
    """Every verb's parser (``("run",)``, ``("score", "fid")``…), each once (aliases skipped)."""
    found: dict[tuple, argparse.ArgumentParser] = {}
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                found[path + (name,)] = sub
                found.update(_verb_parsers(sub, path + (name,)))
    return found


def test_every_verb_has_human_help_with_an_example():
    verbs = _verb_parsers(cli._parser())
    assert {("run",), ("validate",), ("export",), ("score", "fid"), ("score", "stats"), ("doctor",)} <= set(verbs)
    for path, parser in verbs.items():
        text = parser.format_help()
        where = " ".join(path)
        assert not re.search(r"\b\w+Options\.\w+", text), (where, text)  # no "FIDOptions.features"
        assert "(default: None)" not in text, where
        assert not re.search(r"\(default: [^)]*\)\s*\(default:", text), (where, text)  # no double default
        assert "examples:" in text, where
        example = f"  t2ibench {where}"
        assert any(line.startswith(example) for line in text.splitlines()), (where, text)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), (where, action.dest)  # every argument described
            assert action.help.count("default:") <= 1, (where, action.dest, action.help)


# --- did-you-mean -----------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", [None, "ray"])
def test_executor_option_typo_on_the_command_line_suggests_the_option(write_suite, capsys, executor):
    path = write_suite()
    argv = ["run", path, "--executor-opt", "adress=auto"] + (["--executor", executor] if executor else [])
    code, _, err = _cli(capsys, *argv)
    assert code == 2
    assert "option 'adress'" in err and "did you mean 'address'" in err
    if executor is None:  # local has no options: say which executor has it
        assert "of executor 'ray'" in err
    assert "Traceback" not in err


def test_executor_option_typo_in_a_suite_suggests_the_option(tmp_path, capsys):
    path = _write(tmp_path, """\
        name: t
        model: random:tiny-sd
        prompts: [a cat]
        executor: {name: ray, adress: auto}
        """)
    code, _, err = _cli(capsys, "validate", path)
    assert code == 2
    assert f"{path}:4: executor.adress: unknown option (did you mean 'address'?)" in err


def test_cache_method_typos_suggest_the_key_and_the_method(tmp_path, capsys):
    path = _write(tmp_path, """\
        name: t
        model: random:tiny-sd
        prompts: [a cat]
        defaults:
          cache: {methd: first_block}
        matrix:
          cache: [{method: firstblock}, {method: first_block, treshold: 0.1}]
        """)
    code, _, err = _cli(capsys, "validate", path)
    assert code == 2
    lines = err.splitlines()
    assert f"t2ibench: error: {path}:5: defaults.cache.methd: unknown key 'methd' (did you mean 'method'?)" in lines
    assert (f"t2ibench: error: {path}:7: matrix.cache[0].method: unknown value 'firstblock' "
            "(did you mean 'first_block'?)") in lines
    assert (f"t2ibench: error: {path}:7: matrix.cache[1].treshold: unknown key 'treshold' "
            "(did you mean 'threshold'?)") in lines


def test_three_typos_are_reported_at_once_each_with_its_line(tmp_path, capsys):
    path = _write(tmp_path, """\
        name: t
        model: random:tiny-sd
        prompts: [a cat]
        defaults:
          cache: {methd: first_block}
        executor:
          name: ray
          adress: auto
          max_actor: 2
        """)
    code, _, err = _cli(capsys, "validate", path)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln]
    assert lines == [
        f"t2ibench: error: {path}:5: defaults.cache.methd: unknown key 'methd' (did you mean 'method'?)",
        f"t2ibench: error: {path}:8: executor.adress: unknown option (did you mean 'address'?)",
        f"t2ibench: error: {path}:9: executor.max_actor: unknown option (did you mean 'max_actors'?)",
    ]


def test_a_typo_in_a_nested_knob_suggests_its_key(tmp_path):
    path = _write(tmp_path, """\
        name: t
        model: random:tiny-sd
        prompts: [a cat]
        defaults:
          lora: [{sorce: x.safetensors}]
          offload: {kind: group, levle: leaf}
        """)
    with pytest.raises(Exception) as info:
        load_suite(path)
    problems = info.value.problems
    assert any("lora[0].sorce: unknown key 'sorce' (did you mean 'source'?)" in p for p in problems)
    # the mapping form's own error only: not also "unknown value {...}; choose one of: none, model, sequential"
    assert [p for p in problems if "offload" in p] == [
        f"{path}:6: defaults.offload.levle: unknown key 'levle' (did you mean 'level'?)"]


# --- shorthands and names ----------------------------------------------------------------------------

def test_prompts_file_shorthand_reads_the_file_next_to_the_suite(tmp_path, monkeypatch):
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "prompts.txt").write_text("a red cube\na lighthouse at dusk\n")
    short = _write(folder, "name: t\nmodel: random:tiny-sd\nprompts: prompts.txt\n", "short.yaml")
    long = _write(folder, "name: t\nmodel: random:tiny-sd\nprompts: {source: prompts.txt}\n", "long.yaml")
    monkeypatch.chdir(tmp_path)  # not the suite's folder: the file resolves against the suite
    suite = load_suite(short)
    assert [p.text for p in suite.prompt_list()] == ["a red cube", "a lighthouse at dusk"]
    assert suite == load_suite(long)


def test_quantize_none_in_a_matrix_is_no_quantization(tmp_path):
    path = _write(tmp_path, """\
        name: t
        model: random:tiny-sd
        prompts: [a cat]
        defaults: {steps: 2}
        matrix:
          quantize: [none, int8wo]
        """)
    plain = _write(tmp_path, "name: t\nmodel: random:tiny-sd\nprompts: [a cat]\ndefaults: {steps: 2}\n", "plain.yaml")
    none, int8 = load_suite(path).configs()
    assert none.knobs.options.quantize is None and int8.knobs.options.quantize.type == "int8wo"
    assert none.name == "quantize=none" and "null" not in none.name
    assert none.config_id == load_suite(plain).configs()[0].config_id  # as if quantize were never written
    nulls = _write(tmp_path, path.read_text().replace("[none, int8wo]", "[null, int8wo]"), "nulls.yaml")
    assert [c.name for c in load_suite(nulls).configs()] == ["quantize=none", "quantize=int8wo"]


DEFAULT_AND_INCLUDE = """\
name: t
model: random:tiny-sd
prompts: [a cat]
defaults: {steps: 2, width: 64, height: 64}
include:
  - {name: fast, steps: 1}
"""


def test_the_default_config_of_include_without_matrix_is_announced_with_how_to_drop_it(tmp_path, capsys):
    from t2ibench.suites import suite_notes

    path = _write(tmp_path, DEFAULT_AND_INCLUDE)
    code, out, _ = _cli(capsys, "validate", path)
    assert code == 0
    note = [ln for ln in out.splitlines() if "note:" in ln]
    assert len(note) == 1 and "'default'" in note[0] and "defaults alone" in note[0]
    advice = re.search(r"add (exclude: .*)$", note[0]).group(1)
    dropped = _write(tmp_path, DEFAULT_AND_INCLUDE + advice + "\n", "dropped.yaml")
    suite = load_suite(dropped)  # following the advice drops it, and only it
    assert [c.name for c in suite.configs()] == ["fast"] and suite_notes(suite) == []
    matrix = _write(tmp_path, DEFAULT_AND_INCLUDE + "matrix: {steps: [3]}\n", "matrix.yaml")
    assert suite_notes(load_suite(matrix)) == []  # with a matrix there is no 'default' config


def test_run_announces_the_default_config_before_it_starts(tmp_path, capsys, monkeypatch):
    from t2ibench import orchestration
    from t2ibench.errors import UserError

    def stop(*args, **kwargs):
        raise UserError("stopped before any work")

    monkeypatch.setattr(orchestration, "execute", stop)
    code, _, err = _cli(capsys, "run", _write(tmp_path, DEFAULT_AND_INCLUDE))
    assert code == 2
    assert re.search(r"^note: config 'default' runs the defaults alone.*exclude:", err, re.M)


# --- applied --------------------------------------------------------------------------------------

def test_applied_names_the_quantization_config_so_int8wo_and_int8dq_read_apart():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchao")
    from diffusers import TorchAoConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    from t2ibench.backends.torch.options import QuantizeOptions
    from t2ibench.backends.torch.quantization import observe_quantized

    def pipe(config):  # a denoiser loaded with `config`: int8 storage, as a quantizer leaves it
        unet = torch.nn.Linear(2, 2)
        unet.weight = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.int8), requires_grad=False)
        unet.hf_quantizer = types.SimpleNamespace(quantization_config=config)
        return types.SimpleNamespace(components={"unet": unet}, unet=unet)

    wo = observe_quantized(pipe(TorchAoConfig(Int8WeightOnlyConfig())), QuantizeOptions(type="int8wo"))
    dq = observe_quantized(pipe(TorchAoConfig(Int8DynamicActivationInt8WeightConfig())),
                           QuantizeOptions(type="int8dq"))
    assert wo["config"] == "torchao int8wo (Int8WeightOnlyConfig)"
    assert dq["config"] == "torchao int8dq (Int8DynamicActivationInt8WeightConfig)"
    assert wo["unet"] == dq["unet"] == {"float32": 1, "int8": 1}  # the counts alone cannot tell them apart

    from t2ibench.reports.html import applied_summary

    assert "quantize torchao int8dq" in applied_summary(json.dumps({"quantize": dq}))


# --- also fix -------------------------------------------------------------------------------------

def test_no_blank_line_before_an_error(write_suite, capsys):
    code, out, err = _cli(capsys, "run", write_suite(), "--executor-opt", "adress=auto")
    assert code == 2 and out == ""
    assert err.startswith("t2ibench: error: ") and "\n\n" not in err


def test_counts_are_pluralised(tmp_path, capsys):
    from t2ibench.base import plural

    assert [plural(n, "prompt") for n in (0, 1, 2)] == ["0 prompts", "1 prompt", "2 prompts"]
    path = _write(tmp_path, "name: t\nmodel: random:tiny-sd\nprompts: [a cat]\nseeds: [0]\n")
    code, out, _ = _cli(capsys, "validate", path)
    assert code == 0 and out.strip() == f"{path}: ok (1 config × 1 prompt × 1 seed)"


def test_doctor_on_a_cpu_only_machine_does_not_claim_cuda(monkeypatch):
    torch = pytest.importorskip("torch")
    from t2ibench import doctor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    lines = list(doctor.report())
    cuda = [ln for ln in lines if ln.strip().startswith("cuda ")]
    assert len(cuda) == 1
    assert "no CUDA device" in cuda[0] and "torch built with CUDA 13.0" in cuda[0]
    assert not re.fullmatch(r"\s*cuda\s+[\d.]+\s*", cuda[0])


def test_export_into_a_missing_folder_is_an_error_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(capsys, "export", tmp_path, "-o", "nowhere/deeper/baseline.json")
    assert code == 2 and out == ""
    assert err.strip() == ("t2ibench: error: -o nowhere/deeper/baseline.json: the folder nowhere/deeper does "
                           "not exist (create it first)")
    assert not (tmp_path / "nowhere").exists()


def test_score_of_two_npz_files_shows_no_unknown_counts(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        x = rng.normal(size=(20, 4))
        np.savez(tmp_path / f"{name}.npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False))
    code, out, _ = _cli(capsys, "score", "fid", tmp_path / "a.npz", tmp_path / "b.npz")
    assert code == 0 and out.startswith("FID: ") and "None" not in out and "n_a" not in out
    code, out, _ = _cli(capsys, "score", "fid", tmp_path / "a.npz", tmp_path / "b.npz", "--json")
    data = json.loads(out)
    assert "n_a" not in data and "n_b" not in data and np.isfinite(data["value"])

