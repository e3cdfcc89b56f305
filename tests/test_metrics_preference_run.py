"""HPSv2, PickScore, ImageReward, the aesthetic score and FD-DINOv2 in a suite run, through `t2ibench score`,
in `doctor`, and through the feature cache; all offline on random:tiny weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import t2ibench
from t2ibench.cli import main
from t2ibench.metrics.evaluate import ImageRecord, evaluate

NEW = ("hpsv2", "pickscore", "image_reward", "aesthetic", "fd_dinov2")
LABELS = {"hpsv2": "HPSv2.1", "pickscore": "PickScore", "image_reward": "ImageReward", "aesthetic": "aesthetic score",
          "fd_dinov2": "FD-DINOv2"}
TINY = {name: {"weights": "random:tiny"} for name in NEW}


def test_a_suite_with_the_five_metrics_runs_offline_and_reports_them(write_suite, tmp_path):
    path = write_suite(matrix={"steps": [2]}, reference={"steps": 3}, metrics=TINY,
                       defaults={"steps": 2, "width": 32, "height": 32, "guidance_scale": 5.0})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu")
    csv = pd.read_csv(run.run_dir / "results.csv").set_index("config")
    for name in NEW:
        for suffix in ("", "_lo", "_hi"):
            assert f"{name}{suffix}" in csv.columns
        scored = csv.index if name != "fd_dinov2" else ["steps=2"]  # a distance has no row for the reference
        assert all(name in str(csv.loc[c, "random_weights"]).split(",") for c in scored)
    cand = csv.loc["steps=2"]
    for name in NEW:
        assert math.isfinite(cand[name]) and cand[f"{name}_lo"] <= cand[name] <= cand[f"{name}_hi"]
    assert math.isnan(csv.loc["reference", "fd_dinov2"])  # a distance: the reference is not scored against itself
    for name in ("hpsv2", "pickscore", "image_reward", "aesthetic"):  # per-image scores: the reference gets a value
        assert math.isfinite(csv.loc["reference", name])
    html = (run.run_dir / "report.html").read_text()
    assert "not meaningful" in html
    for name in NEW:
        assert name in html and LABELS[name] in html


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pref-cli")
    rng = np.random.default_rng(4)
    for folder, shift in (("a", 0), ("b", 50)):
        (root / folder).mkdir()
        for i in range(4):
            low = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
            arr = np.clip(np.asarray(Image.fromarray(low).resize((48, 40)), np.float64) + shift, 0, 255)
            Image.fromarray(arr.astype(np.uint8)).save(root / folder / f"{i}.png")
    (root / "prompts.txt").write_text("a cat\na dog\na red cube\na lighthouse\n")
    return root


def _json(capsys, *argv: str) -> dict:
    assert main(["score", *argv, "--json", "--num-workers", "0"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ["hpsv2", "pickscore", "image_reward"])
def test_score_cli_runs_prompted_metrics_on_a_folder(name, folders, capsys):
    files = sorted((folders / "a").iterdir())
    prompts = (folders / "prompts.txt").read_text().split("\n")[:4]
    out = _json(capsys, name, str(folders / "a"), "--prompts", str(folders / "prompts.txt"), "--weights", "random:tiny")
    records = [ImageRecord("a", f.name, p, 0, f) for f, p in zip(files, prompts)]
    (row,) = evaluate({name: {"weights": "random:tiny"}}, records, None, cache_dir=None, ci=False)
    assert out["metric"] == name and out["n"] == 4 and out["random_weights"] is True
    assert out["value"] == pytest.approx(row.value, rel=1e-6)
    with pytest.raises(SystemExit) as e:  # prompts are required (argparse's own error)
        main(["score", name, str(folders / "a"), "--weights", "random:tiny"])
    assert e.value.code == 2


def test_score_cli_aesthetic_needs_no_prompts_and_labels_random_weights(folders, capsys):
    assert main(["score", "aesthetic", str(folders / "a"), "--weights", "random:tiny", "--num-workers", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("AESTHETIC: ") and "not meaningful (random weights)" in out


def test_score_cli_fd_dinov2_between_folders(folders, capsys):
    ab = _json(capsys, "fd_dinov2", str(folders / "a"), str(folders / "b"), "--weights", "random:tiny")
    aa = _json(capsys, "fd_dinov2", str(folders / "a"), str(folders / "a"), "--weights", "random:tiny")
    assert ab["n_a"] == ab["n_b"] == 4 and ab["value"] > 0 and abs(aa["value"]) < 1e-6 * max(1.0, ab["value"])


def test_score_cli_missing_weights_is_one_line_naming_the_file(folders, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("T2IBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["score", "image_reward", str(folders / "a"), "--prompts", str(folders / "prompts.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ImageReward.pt" in err[0] and "huggingface.co/THUDM/ImageReward" in err[0]
    assert main(["score", "hpsv2", str(folders / "a"), "--prompts", str(folders / "prompts.txt"),
                 "--weights", str(tmp_path / "HPS_v2.1_compressed.pt")]) == 2
    assert "HPS_v2.1_compressed.pt' does not exist" in capsys.readouterr().err
    assert main(["score", "pickscore", str(folders / "a"), "--prompts", str(folders / "prompts.txt"),
                 "--weights", "random:huge"]) == 2


def test_doctor_lists_their_weights(tmp_path, monkeypatch):
    from t2ibench import doctor

    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    lines = list(doctor._weights())
    for label, needle in (("HPSv2.1", "HPS_v2.1_compressed.pt"), ("PickScore", "PickScore_v1"),
                          ("ImageReward", "ImageReward.pt"), ("ImageReward tokenizer", "vocab.txt"),
                          ("aesthetic predictor", "sac+logos+ava1-l14-linearMSE.pth"),
                          ("DINOv2 ViT-L/14", "dinov2_vitl14_pretrain.pth")):
        (line,) = [ln for ln in lines if ln.split("missing:")[0].strip() == label]
        assert needle in line.split("missing:")[1]


def test_a_second_scoring_of_the_same_images_runs_no_network(folders, tmp_path, monkeypatch):
    """Image features, text embeddings and ImageReward's pair scores come from the feature cache."""
    import open_clip
    from transformers import CLIPModel

    from t2ibench.metrics.networks import Extractor

    files = sorted((folders / "a").iterdir())
    records = [ImageRecord("a", f.name, f"prompt {i % 2}", 0, f) for i, f in enumerate(files)] + \
        [ImageRecord("b", f.name, f"prompt {i % 2}", 0, f) for i, f in enumerate(sorted((folders / "b").iterdir()))]
    first = evaluate(TINY, records, "a", cache_dir=tmp_path / "cache")
    calls: list[str] = []
    for cls, method in ((Extractor, "forward"), (open_clip.model.CLIP, "encode_text"),
                        (CLIPModel, "get_text_features")):
        real = getattr(cls, method)
        monkeypatch.setattr(cls, method, lambda *a, _r=real, _m=method, **k: calls.append(_m) or _r(*a, **k))
    from t2ibench.metrics import image_reward

    model = image_reward._model("tiny", None)
    real_ir = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda *a, **k: calls.append("image_reward") or real_ir(*a, **k))
    again = evaluate(TINY, records, "a", cache_dir=tmp_path / "cache")
    assert calls == []
    assert [(r.config_id, r.metric, r.value) for r in again] == [(r.config_id, r.metric, r.value) for r in first]
