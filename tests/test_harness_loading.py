"""Loading by path (save_pretrained folders of SD and SDXL shape), hub ids offline, and CLI user errors."""

from __future__ import annotations

import pytest

import t2ibench
from t2ibench.cli import main
from t2ibench.backends.torch.random_models import RANDOM_PIPELINES


@pytest.mark.parametrize("arch, cls", [("tiny-sd", "StableDiffusionPipeline"),
                                       ("tiny-sdxl", "StableDiffusionXLPipeline")])
def test_save_pretrained_folder_loads_by_path_through_cli(arch, cls, write_suite, tmp_path):
    folder = tmp_path / arch
    RANDOM_PIPELINES.get(arch)().save_pretrained(folder)
    path = write_suite(model=str(folder), matrix={"scheduler": ["euler", "dpmpp_2m"]})
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    results = t2ibench.open_run(out).results()
    assert list(results["n_ok"]) == [6, 6] and set(results["model"]) == {str(folder)}
    from t2ibench.backends.torch.loading import load_pipeline

    assert type(load_pipeline(str(folder), precision="fp32")).__name__ == cls


def test_random_pipelines_are_deterministic_real_classes():
    a, b = RANDOM_PIPELINES.get("tiny-sdxl")(), RANDOM_PIPELINES.get("tiny-sdxl")()
    assert type(a).__name__ == "StableDiffusionXLPipeline" and type(a.unet).__name__ == "UNet2DConditionModel"
    for (name, p), (_, q) in zip(a.unet.state_dict().items(), b.unet.state_dict().items()):
        assert (p == q).all(), name
    assert a.vae_scale_factor == 8


@pytest.mark.parametrize("model, message", [
    ("someorg/not-a-cached-model", "not in the Hugging Face cache"),
    ("./no/such/folder", "does not exist"),
    ("random:tiny-sdx", "did you mean 'random:tiny-sdxl'?"),
])
def test_unloadable_model_is_a_one_line_user_error(model, message, write_suite, tmp_path, capsys):
    path = write_suite(model=model)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_help_lists_verbs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for verb in ("run", "report", "score", "validate", "suites", "doctor"):
        assert verb in out
    assert "examples:" in out


def test_cli_suites_and_doctor(capsys):
    assert main(["suites"]) == 0
    assert "smoke" in capsys.readouterr().out
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "attention backends: sdpa" in out and "torch" in out and "FID Inception" in out
    from importlib import metadata

    # each optional package: its installed version, or the command that installs it
    assert f"peft             {metadata.version('peft')}" in out
    assert "xformers         not installed (pip install 't2ibench[xformers]')" in out or \
        f"xformers         {metadata.version('xformers')}" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "smoke", "--device", "cuda"], "CUDA is not available"),
    (["run", "smoke", "--executor", "rayy"], "did you mean 'ray'?"),
    (["run", "no-such-suite"], "no-such-suite"),
    (["report", "/nonexistent/run"], "not a t2ibench run directory"),
    (["validate", "/nonexistent/suite.yaml"], "suite.yaml"),
])
def test_cli_user_errors_exit_2(argv, message, capsys):
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_report_regenerates_from_store(write_suite, tmp_path):
    path = write_suite()
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    (run.run_dir / "results.csv").unlink()
    (run.run_dir / "report.md").unlink()
    assert main(["report", str(run.run_dir), "--format", "csv,md"]) == 0
    assert (run.run_dir / "results.csv").is_file() and "| config |" in (run.run_dir / "report.md").read_text()
    assert main(["report", str(run.run_dir), "--format", "mdd"]) == 2


def test_missing_model_fails_its_group_only_and_still_reports(write_suite, tmp_path, capsys):
    path = write_suite(include=[{"name": "elsewhere", "model": "someorg/not-a-cached-model"}])
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 2
    assert "not in the Hugging Face cache" in capsys.readouterr().err
    results = t2ibench.open_run(out).results().set_index("config")
    assert results.loc["default", "n_ok"] == 6
    assert results.loc["elsewhere", "status"] == "failed" and results.loc["elsewhere", "n_ok"] == 0
    assert (out / "report.html").is_file() and (out / "results.csv").is_file()
