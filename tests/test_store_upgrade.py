"""A run directory written by t2ibench 0.1 (store schema 1, no calls table) opens for report, compare and
resume: the store is upgraded on open, and its figures stay those the old version wrote."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from t2ibench.cli import main
from t2ibench.store import SCHEMA_VERSION, RunStore

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def _version(run: Path) -> int:
    with sqlite3.connect(run / "run.sqlite") as conn:
        return int(json.loads(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]))


def test_opening_upgrades_and_derives_one_call_per_call_index(old_run):
    assert _version(old_run) == 1
    with RunStore.open(old_run) as store:
        calls, cells = store.calls(), store.cells()
    assert _version(old_run) == SCHEMA_VERSION == 2
    assert {(c["config_id"], c["call_index"]) for c in calls} == {(c["config_id"], c["call_index"]) for c in cells}
    for call in calls:
        mine = [c for c in cells if (c["config_id"], c["call_index"]) == (call["config_id"], call["call_index"])]
        assert call["samples"] == mine[0]["latency_samples"] and len(call["samples"]) == 3  # repeats: 3
        assert call["latency_ms"] == mine[0]["latency_ms"] and call["step_ms"] == mine[0]["step_ms"]


def test_report_of_an_old_run_keeps_its_figures(old_run):
    old = pd.read_csv(FIXTURE / "results.csv").set_index("config_id")
    assert main(["report", str(old_run), "--format", "csv,md,html"]) == 0
    new = pd.read_csv(old_run / "results.csv").set_index("config_id")
    assert list(new.index) == list(old.index)
    for column in ("n_ok", "peak_rss_mb", "clip_score", "clip_score_lo", "lpips", "step_ms_mean"):
        np.testing.assert_allclose(new[column], old[column], rtol=1e-9, err_msg=column)
    # the latency figures now take every repeat, as compare always did (0.1 took each call's median repeat)
    with RunStore.open(old_run) as store:
        for cid in new.index:
            samples = [x for c in store.calls() if c["config_id"] == cid for x in c["samples"]]
            assert len(samples) == 12
            assert new.loc[cid, "latency_ms_p50"] == pytest.approx(np.median(samples), rel=1e-12)
            assert new.loc[cid, "latency_ms_mean"] == pytest.approx(np.mean(samples), rel=1e-12)
            assert new.loc[cid, "images_per_s"] == pytest.approx(1000 / np.mean(samples), rel=1e-12)
    assert new["backend"].eq("torch").all()  # a knob added later shows its default


def test_compare_and_resume_an_old_run(old_run, tmp_path, capsys):
    other = shutil.copytree(FIXTURE, tmp_path / "other")
    assert main(["compare", str(old_run), str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]
    shutil.rmtree(old_run / "images" / sorted(p.name for p in (old_run / "images").iterdir())[0])
    assert main(["run", str(old_run / "suite.yaml"), "--out", str(old_run), "--no-metrics"]) == 0
    err = capsys.readouterr().err
    assert "4 cells to generate, 8 already done" in err
    cells = pd.read_csv(old_run / "cells.csv")
    assert len(cells) == 12 and set(cells["status"]) == {"ok"}
