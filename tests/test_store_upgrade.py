"""A run directory written by t2ibench 0.1 (store schema 1, no calls table) opens for report, compare and
resume: the store is upgraded on open, and its figures stay those the old version wrote. A store of schema 2
(cells copying their call's timings) is upgraded to 3 (cells pointing to their call) with the same cells read
back."""

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
from t2ibench.store import runstore
from t2ibench.store.runstore import CELL_COLUMNS, CELL_TABLE_COLUMNS

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
    assert _version(old_run) == SCHEMA_VERSION == 3
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


def _table_columns(run: Path, table: str) -> list[str]:
    with sqlite3.connect(run / "run.sqlite") as conn:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def test_cells_csv_of_an_old_run_is_the_one_it_wrote(old_run):
    """The cells of the 0.1 run, now each joined with its call, read back as 0.1 wrote them in cells.csv."""
    assert main(["report", str(old_run), "--format", "csv"]) == 0
    assert _table_columns(old_run, "cells") == list(CELL_TABLE_COLUMNS)  # no timing left in the cells
    old = pd.read_csv(FIXTURE / "cells.csv")
    new = pd.read_csv(old_run / "cells.csv")
    assert list(new.columns) == list(old.columns) + ["upscale_ms"]  # a column added since, empty here
    assert new["upscale_ms"].isna().all()
    pd.testing.assert_frame_equal(new[old.columns], old)


# The schema 2 tables as t2ibench wrote them before schema 3 (levels and requests came late in version 2).
V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE configs (
    config_id TEXT PRIMARY KEY, position INTEGER NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    knobs TEXT NOT NULL, is_reference INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT NOT NULL DEFAULT '', load_ms REAL, warmup_ms REAL, recompiles INTEGER NOT NULL DEFAULT 0,
    compile_ms REAL, applied TEXT, export_ms REAL
);
CREATE TABLE cells (
    config_id TEXT NOT NULL, prompt_id TEXT NOT NULL, seed INTEGER NOT NULL, prompt TEXT NOT NULL,
    category TEXT, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    latency_ms REAL, encode_ms REAL, denoise_ms REAL, decode_ms REAL, step_ms TEXT,
    peak_vram_mb REAL, peak_rss_mb REAL, image_path TEXT, image_sha256 TEXT,
    call_index INTEGER, batch_size INTEGER, latency_samples TEXT, recompiles INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, upscale_ms REAL,
    PRIMARY KEY (config_id, prompt_id, seed)
);
CREATE TABLE calls (
    config_id TEXT NOT NULL, call_index INTEGER NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    batch_size INTEGER NOT NULL, n_images INTEGER NOT NULL, samples TEXT NOT NULL DEFAULT '[]',
    latency_ms REAL, encode_ms REAL, denoise_ms REAL, decode_ms REAL, step_ms TEXT,
    peak_vram_mb REAL, peak_rss_mb REAL, recompiles INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    cache_hit_rate REAL, upscale_ms REAL,
    PRIMARY KEY (config_id, call_index)
);
CREATE TABLE metrics (
    config_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL, lo REAL, hi REAL,
    random_weights INTEGER NOT NULL, n INTEGER NOT NULL, extra TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (config_id, metric)
);
"""
V2_LOAD_TABLES = """
CREATE TABLE levels (
    config_id TEXT NOT NULL, level INTEGER NOT NULL, kind TEXT NOT NULL, offered_rate REAL, concurrency INTEGER,
    started_at REAL NOT NULL, duration_s REAL NOT NULL, n_scheduled INTEGER NOT NULL, capped INTEGER NOT NULL DEFAULT 0,
    final INTEGER NOT NULL DEFAULT 1, note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (config_id, level)
);
CREATE TABLE requests (
    config_id TEXT NOT NULL, level INTEGER NOT NULL, request_index INTEGER NOT NULL, prompt_id TEXT, seed INTEGER,
    scheduled_s REAL NOT NULL, sent_s REAL, first_byte_s REAL, done_s REAL NOT NULL, latency_ms REAL NOT NULL,
    status INTEGER, error_kind TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', bytes INTEGER,
    queue_ms REAL, compute_ms REAL, batch INTEGER, slo_ms REAL, capped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (config_id, level, request_index)
);
"""

V2_CELL_KEYS = ("config_id", "prompt_id", "seed", "prompt", "category", "status", "error", "latency_ms", "encode_ms",
                "denoise_ms", "decode_ms", "step_ms", "peak_vram_mb", "peak_rss_mb", "image_path", "image_sha256",
                "call_index", "batch_size", "latency_samples", "recompiles", "created_at", "upscale_ms")


def _cell(config_id, prompt_id, seed, status, **fields) -> dict:
    base = dict.fromkeys(V2_CELL_KEYS)
    return {**base, "config_id": config_id, "prompt_id": prompt_id, "seed": seed, "prompt": f"prompt {prompt_id}",
            "status": status, "error": "", "recompiles": 0, "created_at": 1.5, **fields}


# What t2ibench 2 wrote for: a call of 2 images (batch 2, one with an upscale stage), a call that returned only
# non-finite pixels, a call that raised (peak memory, no timings), cells skipped without a call, and a cell whose
# call row is missing (a store edited by hand): its call is derived from its figures.
V2_CELLS = [
    _cell("a", "p1", 0, "ok", latency_ms=40.0, encode_ms=5.0, denoise_ms=30.0, decode_ms=5.0, step_ms="[15.0, 15.0]",
          peak_rss_mb=900.0, image_path="images/a/p1-0.png", image_sha256="f" * 64, call_index=0, batch_size=2,
          latency_samples="[41.0, 40.0, 39.0]", recompiles=1, upscale_ms=3.0),
    _cell("a", "p2", 0, "ok", latency_ms=40.0, encode_ms=5.0, denoise_ms=30.0, decode_ms=5.0, step_ms="[15.0, 15.0]",
          peak_rss_mb=900.0, image_path="images/a/p2-0.png", image_sha256="e" * 64, call_index=0, batch_size=2,
          latency_samples="[41.0, 40.0, 39.0]", recompiles=1, upscale_ms=3.0),
    _cell("a", "p3", 0, "nan", error="non-finite pixels", latency_ms=20.0, encode_ms=2.0, denoise_ms=16.0,
          decode_ms=2.0, step_ms="[8.0, 8.0]", peak_rss_mb=910.0, call_index=1, batch_size=2, latency_samples="[20.0]"),
    _cell("a", "p4", 0, "failed", error="RuntimeError: out of memory", peak_vram_mb=70000.0, peak_rss_mb=920.0,
          call_index=2, batch_size=2),
    _cell("a", "p5", 0, "skipped", error="skipped after 1 consecutive failed calls", batch_size=2),
    _cell("b", "p1", 0, "ok", latency_ms=12.5, encode_ms=1.0, denoise_ms=10.5, decode_ms=1.0, step_ms="[10.5]",
          peak_rss_mb=800.0, image_path="images/b/p1-0.png", image_sha256="d" * 64, call_index=4, batch_size=1,
          latency_samples="[12.5]"),
    _cell("b", "p2", 0, "skipped", error="backend not installed", batch_size=1),
]
V2_CALLS = [  # config_id, call_index, status, error, batch_size, n_images, samples, latency, encode, denoise,
    # decode, step_ms, vram, rss, recompiles, created_at, cache_hit_rate, upscale_ms
    ("a", 0, "ok", "", 2, 2, "[41.0, 40.0, 39.0]", 40.0, 5.0, 30.0, 5.0, "[15.0, 15.0]", None, 900.0, 1, 1.5, 0.25,
     3.0),
    ("a", 1, "nan", "", 2, 1, "[20.0]", 20.0, 2.0, 16.0, 2.0, "[8.0, 8.0]", None, 910.0, 0, 1.5, None, None),
    ("a", 2, "failed", "RuntimeError: out of memory", 2, 1, "[]", None, None, None, None, None, 70000.0, 920.0, 0, 1.5,
     None, None),
]


def _v2_store(run: Path, load_tables: bool) -> None:
    run.mkdir()
    with sqlite3.connect(run / "run.sqlite") as conn:
        conn.executescript(V2_SCHEMA + (V2_LOAD_TABLES if load_tables else ""))
        conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        for position, (cid, batch) in enumerate((("a", 2), ("b", 1))):
            conn.execute("INSERT INTO configs (config_id, position, name, model, knobs, is_reference, status) "
                         "VALUES (?, ?, ?, 'random:tiny-sd', ?, 0, 'done')",
                         (cid, position, f"config {cid}", json.dumps({"steps": 2, "batch_size": batch})))
        conn.executemany(f"INSERT INTO cells VALUES ({','.join('?' * len(V2_CELL_KEYS))})",
                         [tuple(c[k] for k in V2_CELL_KEYS) for c in V2_CELLS])
        conn.executemany(f"INSERT INTO calls VALUES ({','.join('?' * 18)})", V2_CALLS)
        if load_tables:
            conn.execute("INSERT INTO levels VALUES ('b', 0, 'server', 1.0, NULL, 100.0, 2.0, 2, 0, 1, '')")
            conn.execute("INSERT INTO requests (config_id, level, request_index, scheduled_s, done_s, latency_ms) "
                         "VALUES ('b', 0, 0, 0.0, 0.5, 500.0)")


def _as_read_by_v2(cell: dict) -> dict:
    """A cell as t2ibench 2's ``store.cells()`` returned it: its row, with the JSON lists decoded."""
    return {k: (json.loads(cell[k]) if cell[k] else []) if k in ("step_ms", "latency_samples") else cell[k]
            for k in V2_CELL_KEYS}


@pytest.mark.parametrize("load_tables", [False, True], ids=["v2", "v2-with-levels"])
@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
def test_a_v2_store_upgrades_to_cells_pointing_to_their_calls(tmp_path, load_tables, write):
    run = tmp_path / "run"
    _v2_store(run, load_tables)
    with RunStore.open(run, write=write) as store:
        cells, calls = store.cells(), store.calls()
        levels, requests = store.levels(), store.requests()
        done = store.done_cells("a")
        next_a = store.next_call_index("a")
    assert _version(run) == 3
    assert _table_columns(run, "cells") == list(CELL_TABLE_COLUMNS)
    assert list(CELL_COLUMNS) == list(V2_CELL_KEYS)  # store.cells() keeps its keys
    by_key = {(c["config_id"], c["prompt_id"]): c for c in cells}
    assert [list(c) for c in cells] == [list(V2_CELL_KEYS)] * len(V2_CELLS)
    for old in V2_CELLS:  # every cell reads back as version 2 returned it
        assert by_key[old["config_id"], old["prompt_id"]] == _as_read_by_v2(old), old["prompt_id"]
    # the calls stay as they were, and the cell with no call row got one from its figures
    assert [(c["config_id"], c["call_index"], c["status"]) for c in calls] == [
        ("a", 0, "ok"), ("a", 1, "nan"), ("a", 2, "failed"), ("b", 4, "ok")]
    assert calls[0]["cache_hit_rate"] == 0.25 and calls[0]["samples"] == [41.0, 40.0, 39.0]
    assert calls[3]["samples"] == [12.5] and calls[3]["latency_ms"] == 12.5 and calls[3]["n_images"] == 1
    assert done == {("p3", 0)}  # the nan cell; the ok ones' images are not on disk (redone on resume)
    assert next_a == 3
    assert (len(levels), len(requests)) == ((1, 1) if load_tables else (0, 0))


def test_a_failed_upgrade_leaves_the_v2_store_as_it_was(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _v2_store(run, load_tables=False)

    def broken(conn):
        runstore._cells_point_to_calls(conn)  # the whole step runs, then fails before the upgrade commits
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(runstore._UPGRADES, 2, broken)
    with pytest.raises(Exception, match="disk I/O error"):
        RunStore.open(run, write=True)
    assert _version(run) == 2
    assert _table_columns(run, "cells") == list(V2_CELL_KEYS)
    with sqlite3.connect(run / "run.sqlite") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == len(V2_CELLS)
    assert "levels" not in tables and "cells_v3" not in tables
    monkeypatch.undo()
    with RunStore.open(run) as store:  # and it upgrades once the fault is gone
        assert len(store.cells()) == len(V2_CELLS)
    assert _version(run) == 3
