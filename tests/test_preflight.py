"""Mistakes surface before the first image (issue 18): the preflight shared by ``validate`` and the start of
``run``, the always-skipped combinations ``validate`` announces, a user error met after generation, ``--out``
naming a file, and one rule for relative paths (they resolve against the suite file's folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import t2ibench
from t2ibench.cli import main
from t2ibench.suites import load_suite

from conftest import suite_dict


def write(path: Path, **overrides) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(suite_dict(**overrides), sort_keys=False))
    return path


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` holding ``text`` (what a file:line error must point at)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def small(**overrides) -> dict:
    """One prompt, one seed, one 1-step 32×32 image per config: the cheapest run that still generates."""
    return {"prompts": ["a red cube"], "seeds": [0], "timing": {"warmup": 0, "repeats": 1},
            "defaults": {"steps": 1, "width": 32, "height": 32, "guidance_scale": 5.0}, **overrides}


def flat(text: str) -> str:
    """Console output with its line wrapping undone (the progress console wraps long lines at its width)."""
    return " ".join(text.split())


def pngs(run_dir: Path) -> list[Path]:
    """The generated images of a run directory."""
    images = run_dir / "images"
    return sorted(images.rglob("*.png")) if images.exists() else []


# --- preflight: LoRA files -------------------------------------------------------------------------

def test_validate_names_a_missing_lora_file_at_its_line(tmp_path, capsys):
    typo = [{"name": "typo", "lora": [{"source": "./does-not-exist.safetensors"}]}]
    path = write(tmp_path / "suite.yaml", include=typo)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    line = line_of(path, "does-not-exist")
    assert f"suite.yaml:{line}: include[0].lora[0].source: lora file '{tmp_path / 'does-not-exist.safetensors'}' " \
           "does not exist" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_run_with_a_missing_lora_file_exits_2_before_any_model_loads(tmp_path, capsys, monkeypatch):
    import t2ibench.backends.torch.loading as loading

    loads = []
    real = loading.load_pipeline
    monkeypatch.setattr(loading, "load_pipeline", lambda *a, **k: loads.append(a) or real(*a, **k))
    typo = [{"name": "typo", "lora": [{"source": "missing.safetensors"}]}]
    path = write(tmp_path / "suite.yaml", **small(include=typo))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "lora file" in err and "missing.safetensors' does not exist" in err and "Traceback" not in err
    assert loads == [] and pngs(out) == [] and not out.exists()


def test_a_hub_lora_not_in_the_cache_is_an_error_when_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write(tmp_path / "suite.yaml", include=[{"name": "hub", "lora": [{"source": "someorg/not-a-cached-lora"}]}])
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "include[0].lora[0].source: lora 'someorg/not-a-cached-lora' (pytorch_lora_weights.safetensors) is not " \
           "in the Hugging Face cache and HF_HUB_OFFLINE is set" in err


# --- preflight: metric networks ----------------------------------------------------------------------

def test_validate_catches_a_bad_metric_network_name_with_did_you_mean(tmp_path, capsys):
    path = write(tmp_path / "suite.yaml", metrics={"clip_score": {"model": "random:ViT-B-33"},
                                                 "lpips": {"against": "reference", "net": "random:alx"}},
                 reference={"steps": 4})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert f"t2ibench: error: {path}:{line_of(path, 'ViT-B-33')}: metrics.clip_score.model: unknown open_clip model " \
           "'random:ViT-B-33' (did you mean 'random:ViT-B-32'?)" in err
    assert any(f":{line_of(path, 'random:alx')}: metrics.lpips.net: unknown LPIPS net 'random:alx' (did you mean "
               "'random:alex'?)" in e for e in err)


def test_run_with_a_bad_metric_network_stops_before_generating(tmp_path, capsys):
    path = write(tmp_path / "suite.yaml", **small(seeds=[0, 1], metrics={"clip_score": {"model": "random:ViT-B-33"}}))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 2
    assert "did you mean 'random:ViT-B-32'?" in capsys.readouterr().err
    assert pngs(out) == []
    # --no-metrics: nothing is scored, so nothing about the metrics stops the run
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    assert len(pngs(out)) == 2


def test_missing_real_metric_weights_stop_the_run_before_generating_when_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("T2IBENCH_OFFLINE", "1")
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "hub"))
    path = write(tmp_path / "suite.yaml", **small(seeds=[0, 1], metrics={"fid": {"against": "reference"}},
                                                  reference={"steps": 2}))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "metrics.fid: FID Inception weights 'pt_inception-2015-12-05-6726825d.pth' not found" in err
    assert pngs(out) == []


# --- preflight: too few images ---------------------------------------------------------------------

def test_too_few_images_for_a_metric_is_an_error_in_validate_and_a_warning_in_run(tmp_path, capsys):
    path = write(tmp_path / "suite.yaml", **small(
        metrics={"fid": {"against": "reference", "features": "random:inception"}}, reference={"steps": 2}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"suite.yaml:{line_of(path, 'fid:')}: metrics.fid: fid needs at least 2 images per config, and this suite " \
           "gives 1 (1 prompt × 1 seed); add prompts or seeds" in err
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 0
    err = flat(capsys.readouterr().err)
    assert f"warning: {path}:{line_of(path, 'fid:')}: metrics.fid: fid needs at least 2 images per config" in err
    results = t2ibench.open_run(out).results().set_index("config")
    assert results.loc["default", "n_ok"] == 1 and np.isnan(results.loc["default", "fid"])  # no bare number


# --- always-skipped combinations ---------------------------------------------------------------------

SKIPPED = [  # (include entry, the knob whose line the warning points at)
    ({"name": "quant-and-cast", "quantize": "int8wo", "layerwise_casting": {"components": ["denoiser"]}}, "quantize"),
    ({"name": "cache-compiled", "cache": {"method": "first_block"}, "compile": True}, "cache"),
    ({"name": "cast-text", "layerwise_casting": {"components": ["text_encoder"]}}, "layerwise_casting"),
    ({"name": "taylorseer-on-unet", "cache": {"method": "taylorseer"}}, "cache"),
]


def test_validate_warns_of_each_always_skipped_combination_with_the_engines_reason(tmp_path, capsys):
    path = write(tmp_path / "suite.yaml", **small(include=[entry for entry, _ in SKIPPED]))
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "ok (5 configs" in captured.out and "4 warnings" in captured.out
    lines = path.read_text().splitlines()
    warned = {}
    for line in captured.err.splitlines():
        assert line.startswith(f"t2ibench: warning: {path}:")
        for i, (entry, knob) in enumerate(SKIPPED):
            if f"config '{entry['name']}' will be skipped: " in line:
                start = line_of(path, entry["name"])
                at = next(n for n in range(start, len(lines) + 1) if lines[n - 1].lstrip(" -").startswith(f"{knob}:"))
                assert f"suite.yaml:{at}: include[{i}].{knob}: " in line  # the line that sets it
                warned[entry["name"]] = line.split(" will be skipped: ", 1)[1]
    assert set(warned) == {entry["name"] for entry, _ in SKIPPED}
    # the engine skips each of them, with the very reason validate gave
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    results = t2ibench.open_run(out).results().set_index("config")
    for name, reason in warned.items():
        assert results.loc[name, "status"] == "skipped" and reason in results.loc[name, "reason"], name
    assert results.loc["default", "status"] == "done"


def test_run_warns_of_what_cannot_run_on_its_device_before_generating(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("these knobs run on CUDA")
    include = [{"name": "offloaded", "offload": "model"}, {"name": "tf32", "tf32": True}]
    path = write(tmp_path / "suite.yaml", **small(include=include))
    assert main(["validate", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err  # they run on a GPU: validate does not know the device
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    err = flat(capsys.readouterr().err)
    results = t2ibench.open_run(out).results().set_index("config")
    for name, knob, written in (("offloaded", "offload", "offload: model"), ("tf32", "tf32", "tf32: true")):
        at = line_of(path, written)
        reason = results.loc[name, "reason"]
        assert results.loc[name, "status"] == "skipped"
        assert f"warning: {path}:{at}: include[{0 if name == 'offloaded' else 1}].{knob}: config '{name}' will be " \
               f"skipped: {reason}" in err


def test_the_random_denoiser_table_matches_the_built_pipelines():
    from t2ibench.backends.torch.preflight import RANDOM_DENOISERS
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

    assert set(RANDOM_DENOISERS) == set(RANDOM_PIPELINES.names())
    for name in RANDOM_PIPELINES.names():
        if name.startswith("tiny-"):  # the full-size ones take minutes to build
            pipe = RANDOM_PIPELINES.get(name)()
            denoiser = getattr(pipe, "unet", None) or pipe.transformer
            assert type(denoiser).__name__ == RANDOM_DENOISERS[name], name


# --- a user error after generation -------------------------------------------------------------------

def test_a_user_error_found_while_scoring_still_writes_summary_reports_and_manifest(tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("unrelated-0.png", "unrelated-1.png"):  # no file name matches a generated image
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(refs / name)
    metrics = {"lpips": {"against": "refs", "net": "random:alex"}}
    path = write(tmp_path / "suite.yaml", **small(seeds=[0, 1], metrics=metrics))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    err = flat(captured.err)
    assert "metric lpips: config" in err and "has no image paired with" in err and "Traceback" not in err
    assert f"results: {out}" in captured.out and "default" in captured.out and "report:" in captured.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"] == {"ok": 2}
    assert any("has no image paired with" in e for e in manifest["errors"])
    assert (out / "report.html").is_file() and (out / "results.csv").is_file() and len(pngs(out)) == 2


# --- --out naming a file -----------------------------------------------------------------------------

def test_out_naming_an_existing_file_is_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path / "suite.yaml", **small())
    target = tmp_path / "notes.txt"
    target.write_text("not a run")
    assert main(["run", str(path), "--out", str(target), "--device", "cpu"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]  # one line, no traceback
    assert line.startswith(f"t2ibench: error: --out {target}: is an existing file")
    assert target.read_text() == "not a run"


# --- one rule for relative paths ---------------------------------------------------------------------

@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """The suite lives in tmp_path/project; the commands run from tmp_path/elsewhere."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path / "project"


def test_a_relative_model_folder_resolves_against_the_suite_folder(elsewhere, tmp_path):
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

    RANDOM_PIPELINES.get("tiny-sd")().save_pretrained(elsewhere / "models" / "tiny")
    path = write(elsewhere / "suite.yaml", **small(model="./models/tiny"))
    (config,) = load_suite(path).configs()
    assert config.model == str(elsewhere / "models" / "tiny")
    assert main(["validate", str(path)]) == 0
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    assert list(run.results()["n_ok"]) == [1]


def test_a_relative_lora_file_resolves_against_the_suite_folder(elsewhere, tmp_path):
    from safetensors.torch import save_file

    from t2ibench.backends.torch.lora import random_lora
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

    (elsewhere / "adapters").mkdir(parents=True)
    unet = RANDOM_PIPELINES.get("tiny-sd")().unet
    save_file(random_lora("a", unet, "unet"), elsewhere / "adapters" / "a.safetensors")
    include = [{"name": "lora", "lora": [{"source": "adapters/a.safetensors"}]}]  # a file suffix: read as a path
    path = write(elsewhere / "suite.yaml", **small(include=include))
    assert main(["validate", str(path)]) == 0
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results().set_index("config")
    (seen,) = json.loads(results.loc["lora", "applied"])["lora"]
    assert seen["source"] == str(elsewhere / "adapters" / "a.safetensors") and seen["layers"] == 32 and seen["active"]


def test_a_relative_prompt_file_resolves_against_the_suite_folder(elsewhere):
    (elsewhere).mkdir(parents=True)
    (elsewhere / "prompts.txt").write_text("a blue sphere\na green cone\n")
    path = write(elsewhere / "suite.yaml", prompts={"source": "prompts.txt"})
    assert [p.text for p in load_suite(path).prompt_list()] == ["a blue sphere", "a green cone"]


def test_a_relative_reference_folder_resolves_against_the_suite_folder(elsewhere, capsys):
    (elsewhere / "refs").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(elsewhere / "refs" / "x.png")
    path = write(elsewhere / "suite.yaml", metrics={"kid": {"against": "refs", "features": "random:inception"}})
    assert load_suite(path).metrics["kid"].against == str(elsewhere / "refs")
    assert main(["validate", str(path)]) == 0
    (elsewhere / "refs" / "x.png").unlink()
    (elsewhere / "refs").rmdir()
    assert main(["validate", str(path)]) == 2
    assert f"metrics.kid.against: folder '{elsewhere / 'refs'}' does not exist" in capsys.readouterr().err


def test_a_relative_npz_resolves_against_the_suite_folder(elsewhere, capsys):
    elsewhere.mkdir(parents=True)
    np.savez(elsewhere / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    path = write(elsewhere / "suite.yaml", metrics={"fid": {"against": "stats.npz", "features": "random:inception"}})
    assert load_suite(path).metrics["fid"].against == str(elsewhere / "stats.npz")
    assert main(["validate", str(path)]) == 0
    (elsewhere / "stats.npz").unlink()
    assert main(["validate", str(path)]) == 2
    assert f"metrics.fid.against: statistics file '{elsewhere / 'stats.npz'}' does not exist" in capsys.readouterr().err


def test_hub_ids_and_random_specs_stay_as_written_and_keep_their_config_ids(tmp_path):
    from t2ibench.suites import Suite

    data = suite_dict(model="someorg/some-model", include=[
        {"name": "hub-lora", "lora": [{"source": "someorg/some-lora"}], "vae": "tiny"},
        {"name": "random-lora", "lora": [{"source": "random:a"}], "model": "random:tiny-sd"}],
        metrics={"clip_score": {"model": "random:ViT-B-32"}, "fid": {"against": "reference"}}, reference={"steps": 4})
    from_file = load_suite(write(tmp_path / "suite.yaml", **data))
    in_python = Suite.model_validate(data)
    assert [c.config_id for c in from_file.configs()] == [c.config_id for c in in_python.configs()]
    assert [c.model for c in from_file.configs()] == ["someorg/some-model", "someorg/some-model", "random:tiny-sd",
                                                      "someorg/some-model"]
    assert from_file.metrics["fid"].against == "reference"


def test_only_strings_that_look_like_paths_are_resolved(tmp_path):
    from t2ibench.suites.paths import resolve_path

    (tmp_path / "present").mkdir()
    resolved = {v: resolve_path(v, tmp_path) for v in (
        "./m", "../m", "m.safetensors", "stats.npz", "present", "~/m",
        "org/name", "random:tiny-sd", "reference", "tiny", "default", "absent", "https://x/y.safetensors")}
    assert resolved == {
        "./m": str(tmp_path / "m"), "../m": str(tmp_path.parent / "m"), "m.safetensors": str(tmp_path / "m.safetensors"),
        "stats.npz": str(tmp_path / "stats.npz"), "present": str(tmp_path / "present"),
        "~/m": str(Path.home() / "m"), "org/name": "org/name", "random:tiny-sd": "random:tiny-sd",
        "reference": "reference", "tiny": "tiny", "default": "default", "absent": "absent",
        "https://x/y.safetensors": "https://x/y.safetensors"}
    # a pretrained tag is a path only when written as one, even if a file of that name is there
    (tmp_path / "openai").write_text("")
    assert resolve_path("openai", tmp_path, existing=False) == "openai"
