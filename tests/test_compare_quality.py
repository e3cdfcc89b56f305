"""A quality change: the same config name with far fewer steps is a paired-bootstrap regression."""

from __future__ import annotations

import json

import pytest
import yaml

import t2ibench
from t2ibench.cli import main
from t2ibench.reports.compare import compare
from t2ibench.reports.export import load_summary
from tests.conftest import suite_dict

METRICS = {"lpips": {"net": "random:alex"}, "clip_score": {"model": "random:ViT-B-32"}}


@pytest.fixture(scope="module")
def step_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    runs = {}
    for label, steps in (("base", 6), ("cand", 1)):
        suite = suite_dict(name="quality", include=[{"name": "main", "steps": steps}], reference={"steps": 8},
                           metrics=METRICS)
        path = root / f"{label}.yaml"
        path.write_text(yaml.safe_dump(suite))
        runs[label] = t2ibench.run(path, out=root / label, device="cpu").run_dir
    return runs


def test_per_image_values_are_stored(step_runs):
    main_cfg = next(c for c in load_summary(step_runs["base"]).configs if c.name == "main")
    for name in ("clip_score", "lpips"):
        per_image = main_cfg.metrics[name].per_image
        assert len(per_image) == 6 and all(":" in k for k in per_image)
        assert sum(per_image.values()) / 6 == pytest.approx(main_cfg.metrics[name].value)


def test_fewer_steps_is_a_quality_regression(step_runs, capsys):
    result = compare(load_summary(step_runs["base"]), load_summary(step_runs["cand"]))
    lpips = next(r for r in result.rows if r.config == "main" and r.figure == "lpips")
    assert lpips.test.startswith("paired jackknife over prompts") and lpips.ci[0] > 0
    assert lpips.verdict == "regression"
    assert any("matched by name" in n and "steps 6 → 1" in n for n in result.notes)
    # the reverse: going from 1 step back to 6 is an improvement, never a failure
    back = compare(load_summary(step_runs["cand"]), load_summary(step_runs["base"]))
    assert next(r for r in back.rows if r.config == "main" and r.figure == "lpips").verdict == "improvement"

    assert main(["compare", str(step_runs["base"]), str(step_runs["cand"]), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["regression"] and any(r["figure"] == "lpips" and r["verdict"] == "regression" for r in out["rows"])
    assert main(["compare", str(step_runs["base"]), str(step_runs["cand"]), "--markdown"]) == 1
    assert "❌ regression" in capsys.readouterr().out


def test_export_round_trip_keeps_the_verdicts(step_runs, tmp_path, capsys):
    exported = tmp_path / "base.json"
    assert main(["export", str(step_runs["base"]), "-o", str(exported)]) == 0
    data = json.loads(exported.read_text())
    assert data["schema_version"] == 1 and data["suite"] == "quality" and data["environment"]["torch"]
    from_dir = compare(load_summary(step_runs["base"]), load_summary(step_runs["cand"])).to_json()
    from_file = compare(load_summary(exported), load_summary(step_runs["cand"])).to_json()
    assert from_dir["rows"] == from_file["rows"]
