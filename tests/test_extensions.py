"""A metric or a backend registered in one place is everywhere: validate, score, results.csv, compare,
report.html; a suite runs on it end to end. Nothing else is edited."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import fake_backend
from t2ibench.base import Frozen
from t2ibench.cli import main
from t2ibench.metrics.registry import METRICS, MetricSpec

fake_backend.register()


class BrightnessOptions(Frozen):
    channel: int = 0


def score_brightness(o: BrightnessOptions, ctx) -> list:
    """Mean value of one channel per image, in [0, 255]."""
    from t2ibench.metrics import bootstrap as bs
    from t2ibench.metrics.scoring import per_image, result

    out = []
    for cfg, recs in ctx.configs.items():
        v = np.array([np.asarray(Image.open(r.path).convert("RGB"), np.float64)[..., o.channel].mean() for r in recs])
        ci = bs.mean_ci(v, [r.prompt_id for r in recs], seed=ctx.seed) if ctx.ci else None
        out.append(result(cfg, "brightness", v.mean(), ci, False, len(v), per_image=per_image(recs, v)))
    return out


@pytest.fixture
def brightness():
    METRICS.add("brightness", MetricSpec(
        name="brightness", options=BrightnessOptions, runner=score_brightness, higher_is_better=True,
        against=False, per_image=True, gate=1.0, label="Brightness", summary="mean channel value",
    ))
    yield
    METRICS.remove("brightness")


def _suite(tmp_path: Path, **over) -> Path:
    data = {
        "name": "ext", "model": "fake:model", "prompts": ["a red cube", "a cat"], "seeds": [0, 1],
        "defaults": {"backend": "fake", "steps": 2, "width": 32, "height": 32},
        "matrix": {"steps": [1, 2]}, "timing": {"warmup": 1, "repeats": 3},
    }
    data.update(over)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_toy_metric_appears_everywhere(brightness, tmp_path, capsys):
    suite = _suite(tmp_path, metrics={"brightness": {"channel": 1}}, objectives={"brightness": "max"},
                   gates={"brightness": 2.0})
    assert main(["validate", str(suite)]) == 0
    bad = _suite(tmp_path, metrics={"brightness": {"chanel": 1}})
    assert main(["validate", str(bad)]) == 2
    assert "metrics.brightness.chanel" in capsys.readouterr().err

    assert main(["run", str(_suite(tmp_path, metrics={"brightness": {"channel": 1}},
                                   objectives={"brightness": "max"})), "--out", str(tmp_path / "a")]) == 0
    results = pd.read_csv(tmp_path / "a" / "results.csv")
    assert {"brightness", "brightness_lo", "brightness_hi"} <= set(results.columns)
    assert results["brightness"].between(0, 255).all()
    assert "Brightness" in (tmp_path / "a" / "report.html").read_text()

    folder = tmp_path / "a" / "images" / results["config_id"][0]
    capsys.readouterr()
    assert main(["score", "brightness", str(folder), "--channel", "1", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["metric"] == "brightness" and scored["value"] == pytest.approx(results["brightness"][0], rel=1e-9)

    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert any(r["figure"] == "brightness" and r["test"].startswith("paired") for r in rows)


def test_a_toy_backend_runs_a_suite_end_to_end(tmp_path):
    assert main(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "b"), "--no-metrics"]) == 0
    results = pd.read_csv(tmp_path / "b" / "results.csv")
    cells = pd.read_csv(tmp_path / "b" / "cells.csv")
    assert set(results["backend"]) == {"fake"} and set(cells["status"]) == {"ok"} and len(cells) == 8
    for path in cells["image_path"]:
        assert Image.open(tmp_path / "b" / path).size == (32, 32)
    phases = cells["encode_ms"] + cells["denoise_ms"] + cells["decode_ms"]
    assert np.allclose(phases, cells["latency_ms"])


def test_results_and_compare_share_one_p50_with_repeats(tmp_path):
    """With 3 repeats per call, results.csv's p50 and the exported summary that compare reads agree."""
    from t2ibench.reports.compare import compare
    from t2ibench.reports.export import summarize

    assert main(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "c"), "--no-metrics"]) == 0
    results = pd.read_csv(tmp_path / "c" / "results.csv").set_index("config_id")
    summary = summarize(tmp_path / "c")
    rows = compare(summary, summary).rows
    for config in summary.configs:
        assert len(config.latency_samples) == 2 * 2 * 3  # 4 calls × 3 repeats
        assert config.figures["latency_ms_p50"] == results.loc[config.config_id, "latency_ms_p50"]
        (row,) = [r for r in rows if r.config_id == config.config_id and r.figure == "latency_ms_p50"]
        assert row.base == pytest.approx(results.loc[config.config_id, "latency_ms_p50"], rel=1e-12)
        assert row.base == pytest.approx(float(np.median(config.latency_samples)), rel=1e-12)
