"""Metrics inside `t2ibench run`: stored rows, results columns with CIs, labels, and the feature cache."""

from __future__ import annotations

import math

import pandas as pd

import t2ibench
from t2ibench.metrics.networks import Extractor

METRICS = {
    "clip_score": {"model": "random:ViT-B-32"},
    "fid": {"features": "random:inception"},
    "lpips": {"net": "random:alex"},
}


def test_run_scores_writes_columns_and_labels(write_suite, tmp_path):
    path = write_suite(matrix={"steps": [2, 3]}, reference={"steps": 4}, metrics=METRICS)
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu")
    results = run.results().set_index("config")
    for metric in ("clip_score", "fid", "lpips", "lpips_diversity"):
        for suffix in ("", "_lo", "_hi"):
            assert f"{metric}{suffix}" in results.columns
    for name in ("steps=2", "steps=3"):
        row = results.loc[name]
        assert row["fid_lo"] <= row["fid"] <= row["fid_hi"]
        assert row["lpips"] > 0 and row["clip_score_lo"] <= row["clip_score"] <= row["clip_score_hi"]
    assert math.isnan(results.loc["reference", "fid"])  # no FID of the reference against itself
    assert set(results["random_weights"].str.split(",").explode()) >= {"clip_score", "fid", "lpips"}
    csv = pd.read_csv(run.run_dir / "results.csv")
    assert "random_weights" in csv.columns and csv["random_weights"].str.contains("clip_score").all()
    assert "not meaningful" in (run.run_dir / "report.md").read_text()


def test_adding_a_config_only_extracts_features_of_new_images(write_suite, tmp_path, monkeypatch):
    out = tmp_path / "run"
    t2ibench.run(write_suite(matrix={"steps": [2]}, reference={"steps": 4}, metrics=METRICS), out=out, device="cpu")
    seen: list[int] = []
    real = Extractor.forward
    monkeypatch.setattr(Extractor, "forward", lambda self, batch: seen.append(len(batch)) or real(self, batch))
    t2ibench.run(write_suite(matrix={"steps": [2, 3]}, reference={"steps": 4}, metrics=METRICS), out=out,
                 device="cpu")
    new_images = 3 * 2  # one new config × 3 prompts × 2 seeds
    assert sum(seen) == 2 * new_images  # inception and CLIP image tower, each once per new image
    seen.clear()
    t2ibench.run(write_suite(matrix={"steps": [2, 3]}, reference={"steps": 4}, metrics=METRICS), out=out,
                 device="cpu")
    assert seen == []  # a complete rerun re-reports from cached features
