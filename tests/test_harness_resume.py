"""Durability: SIGKILL mid-sweep then resume, missing images redone, one writer per run directory."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

import t2ibench
from t2ibench.cli import main
from t2ibench.store import RunStore


def _ok_cells(run_dir) -> int:
    try:
        with sqlite3.connect(run_dir / "run.sqlite", timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM cells WHERE status='ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "t2ibench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_sweep_then_resume_matches_uninterrupted_run(write_suite, tmp_path):
    path = write_suite(matrix={"scheduler": ["euler", "ddim"], "steps": [4, 6]}, seeds=[0, 1, 2],
                       defaults={"steps": 4, "width": 64, "height": 64})
    total = 4 * 3 * 3
    killed = tmp_path / "killed"
    proc = _cli("run", str(path), "--out", str(killed), "--device", "cpu", "--no-metrics")
    deadline = time.time() + 240
    while _ok_cells(killed) < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _ok_cells(killed)
    assert 5 <= before < total
    with RunStore.open(killed) as store:
        kept = {(c["config_id"], c["prompt_id"], c["seed"]): c["created_at"] for c in store.cells()
                if c["status"] == "ok"}

    assert main(["run", str(path), "--out", str(killed), "--device", "cpu", "--no-metrics"]) == 0
    with RunStore.open(killed) as store:
        cells = store.cells()
    keys = [(c["config_id"], c["prompt_id"], c["seed"]) for c in cells]
    assert len(keys) == total and len(set(keys)) == total
    assert all(c["status"] == "ok" for c in cells)
    # finished cells were not redone
    assert {k: c["created_at"] for k, c in zip(keys, cells) if k in kept} == kept
    # no stray temporary files
    assert not [p for p in (killed / "images").rglob("*") if p.name.endswith(".tmp")]

    clean = t2ibench.run(path, out=tmp_path / "clean", device="cpu", metrics=False)
    png = lambda d: {p.relative_to(d).as_posix(): p.read_bytes() for p in (d / "images").rglob("*.png")}
    assert png(killed) == png(clean.run_dir)


def test_row_whose_image_is_missing_is_redone(write_suite, tmp_path):
    path = write_suite()
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells = run.cells()
    victim = run.run_dir / cells.iloc[2]["image_path"]
    original = victim.read_bytes()
    created = dict(zip(cells["image_path"], cells["created_at"]))
    victim.unlink()
    t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    after = t2ibench.open_run(run.run_dir).cells()
    redone = [p for p, t in zip(after["image_path"], after["created_at"]) if created[p] != t]
    assert redone == [cells.iloc[2]["image_path"]]
    assert victim.read_bytes() == original


def test_second_writer_gets_a_clear_lock_error(write_suite, tmp_path, capsys):
    path = write_suite()
    out = tmp_path / "run"
    with RunStore.open(out, write=True):
        code = main(["run", str(path), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "in use by another t2ibench process" in err and "Traceback" not in err


def test_rerun_without_out_resumes_latest_unfinished_run(write_suite, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_suite(name="resumable")
    first = t2ibench.run(path, device="cpu", metrics=False)
    assert first.run_dir.parent.name == "t2ibench-runs" and first.run_dir.name.startswith("resumable-")
    # a complete run is not resumed: the same command measures again in a new directory
    time.sleep(1.1)
    second = t2ibench.run(path, device="cpu", metrics=False)
    assert second.run_dir != first.run_dir
    # an unfinished one is
    (second.run_dir / cells_path(second)).unlink()
    import json

    manifest = json.loads((second.run_dir / "manifest.json").read_text())
    manifest["status"] = "incomplete"
    (second.run_dir / "manifest.json").write_text(json.dumps(manifest))
    third = t2ibench.run(path, device="cpu", metrics=False)
    assert third.run_dir == second.run_dir


def cells_path(run) -> str:
    return run.cells().iloc[0]["image_path"]


def test_other_suite_in_run_dir_is_a_user_error(write_suite, tmp_path, capsys):
    out = tmp_path / "run"
    t2ibench.run(write_suite(name="one"), out=out, device="cpu", metrics=False)
    assert main(["run", str(write_suite("two.yaml", name="two")), "--out", str(out)]) == 2
    assert "holds suite 'one'" in capsys.readouterr().err


def test_resumed_calls_keep_distinct_call_indices(write_suite, tmp_path):
    """Latency statistics count every call, also when a config was finished in two sessions."""
    path = write_suite()
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells = run.cells()
    for victim in cells["image_path"].iloc[:3]:
        (run.run_dir / victim).unlink()
    t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    after = t2ibench.open_run(run.run_dir).cells()
    assert after["call_index"].nunique() == len(after) == 6  # batch_size 1: one call per image
    r = t2ibench.open_run(run.run_dir).results().iloc[0]
    assert r["latency_ms_mean"] == np.mean(after["latency_ms"])


def test_a_store_written_before_compile_ms_gains_the_column_when_reopened(tmp_path):
    import sqlite3

    from t2ibench.store import RunStore

    with RunStore.open(tmp_path / "run", write=True):
        pass
    conn = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    conn.execute("ALTER TABLE configs DROP COLUMN compile_ms")  # as the store was before the column
    conn.commit()
    conn.close()
    with RunStore.open(tmp_path / "run", write=True) as store:
        store.update_config("x", compile_ms=1.0)  # would raise "no such column" without the migration
    columns = {row[1] for row in sqlite3.connect(tmp_path / "run" / "run.sqlite").execute("PRAGMA table_info(configs)")}
    assert "compile_ms" in columns
