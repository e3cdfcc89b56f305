"""compare/export/run --baseline: exit codes, gates, and bad input as one-line user errors."""

from __future__ import annotations

import json

import pytest
import yaml

import t2ibench
from t2ibench.cli import main
from t2ibench.reports.compare import compare
from t2ibench.reports.export import load_summary
from tests.conftest import suite_dict


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(suite_dict(name="cli", seeds=[0], defaults={"steps": 2, "width": 64, "height": 64},
                                              gates={"latency_ms_p50": "50%"})))
    return t2ibench.run(path, out=root / "run", device="cpu", metrics=False).run_dir


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("t2ibench: error:") and "Traceback" not in err[0]
    return err[0]


def test_identical_runs_exit_0(run_dir, capsys):
    assert main(["compare", str(run_dir), str(run_dir)]) == 0
    assert "no regression" in capsys.readouterr().out


def test_suite_gates_are_used(run_dir):
    rows = compare(load_summary(run_dir), load_summary(run_dir)).rows
    assert str(next(r for r in rows if r.figure == "latency_ms_p50").gate) == "50%"


@pytest.mark.parametrize("gate", ["latency_ms_p50", "latency_ms_p50=fast", "=5%", "latency=5%", "clip_score=-1"])
def test_bad_gate_is_a_user_error(run_dir, capsys, gate):
    assert main(["compare", str(run_dir), str(run_dir), "--gate", gate]) == 2
    assert "--gate" in _error(capsys)


def test_missing_input_is_a_user_error(run_dir, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(run_dir)]) == 2
    assert "does not exist" in _error(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(run_dir), str(tmp_path / "empty")]) == 2
    assert "not a t2ibench run directory" in _error(capsys)


def test_schema_version_mismatch_is_a_user_error(run_dir, tmp_path, capsys):
    exported = tmp_path / "results.json"
    assert main(["export", str(run_dir), "-o", str(exported)]) == 0
    data = json.loads(exported.read_text())
    exported.write_text(json.dumps(dict(data, schema_version=99)))
    assert main(["compare", str(exported), str(run_dir)]) == 2
    assert "schema_version 99" in _error(capsys)
    exported.write_text(json.dumps({"hello": 1}))
    assert main(["compare", str(exported), str(run_dir)]) == 2
    assert "not a t2ibench results file" in _error(capsys)


def test_run_with_baseline(run_dir, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text((run_dir.parent / "suite.yaml").read_text())
    wide = ["latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s", "peak_rss_mb"]
    data = yaml.safe_load(suite.read_text())
    suite.write_text(yaml.safe_dump(dict(data, gates={g: "100000%" for g in wide})))
    assert main(["run", str(suite), "--out", str(tmp_path / "new"), "--baseline", str(run_dir)]) == 0
    assert "no regression" in capsys.readouterr().out
    assert main(["run", str(suite), "--out", str(tmp_path / "x"), "--baseline", str(tmp_path / "nope")]) == 2
    assert "does not exist" in _error(capsys) and not (tmp_path / "x").exists()


def _copy_run(run_dir, to):
    import shutil

    shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("*.lock", ".lock*"))
    return to


def test_a_ray_run_with_other_threads_is_flagged_for_run_dirs_and_exports(run_dir, tmp_path, capsys):
    """The trial's case: a Ray run with 1 thread per actor against a local run with 2 threads."""
    from t2ibench.store import RunStore

    local_threads = load_summary(run_dir).environment["torch_threads"]
    ray_dir = _copy_run(run_dir, tmp_path / "ray")
    with RunStore.open(ray_dir, write=True) as store:  # as a Ray session records them
        store.set_meta("executor", {"name": "ray", "address": None, "cpus_per_actor": local_threads + 1,
                                    "max_actors": None, "share_gpus": False})
        store.set_meta("actors", [{"session": 1, "actor": i, "hostname": "h", "gpu": "cpu",
                                   "torch_threads": local_threads + 1, "cells": 1, "images": 1} for i in range(2)])
    exported = tmp_path / "ray.json"
    assert main(["export", str(ray_dir), "-o", str(exported)]) == 0
    capsys.readouterr()
    for base in (ray_dir, exported):
        main(["compare", str(base), str(run_dir), "--json"])
        result = json.loads(capsys.readouterr().out)
        assert result["environment"]["executor"] == {"base": "ray", "candidate": "local"}
        assert result["environment"]["actors"] == {"base": 2, "candidate": None}
        assert result["environment"]["torch_threads"] == {"base": local_threads + 1, "candidate": local_threads}
        assert not result["timings_comparable"]
        main(["compare", str(base), str(run_dir)])
        text = " ".join(capsys.readouterr().out.split())
        assert (f"warning: environments differ: executor ray → local, actors 2 → –, torch_threads "
                f"{local_threads + 1} → {local_threads} (timings not comparable)") in text


def test_a_noisy_run_is_said_in_the_summary_the_reports_and_compare(run_dir, tmp_path, capsys, monkeypatch):
    import io
    import sqlite3

    from rich.console import Console

    from t2ibench import cli
    from t2ibench.reports import write_reports
    from t2ibench.store import RunStore

    noisy = _copy_run(run_dir, tmp_path / "noisy")
    with sqlite3.connect(noisy / "run.sqlite") as conn:  # each call: three quick repeats and one 4× slower
        conn.execute("UPDATE calls SET samples = json_array(latency_ms, latency_ms, latency_ms, 4 * latency_ms)")
    with RunStore.open(noisy, write=True) as store:
        write_reports(store)
    results = t2ibench.open_run(noisy).results()
    assert results["latency_unstable"].str.contains("p95/p50").all() and (results["latency_cv"] > 0.2).all()
    assert 'id="unstable"' in (noisy / "report.html").read_text()
    assert "unstable timings" in (noisy / "report.md").read_text()
    console = Console(width=80, file=io.StringIO(), color_system=None, highlight=False)
    monkeypatch.setattr(cli, "_console", lambda stderr=False: console)
    cli._print_summary(t2ibench.open_run(noisy))
    assert "unstable timings (p95/p50 > 1.5 or spread CV > 20%): default (p95/p50" in \
        " ".join(console.file.getvalue().split())
    main(["compare", str(run_dir), str(noisy), "--json"])
    assert list(json.loads(capsys.readouterr().out)["unstable"]["candidate"]) == ["default"]


def test_no_common_config_between_run_dirs_is_exit_2(run_dir, tmp_path, capsys):
    exported = tmp_path / "other.json"
    assert main(["export", str(run_dir), "-o", str(exported)]) == 0
    data = json.loads(exported.read_text())
    data["configs"] = [dict(c, config_id="0" * 12, name="another") for c in data["configs"]]
    exported.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["compare", str(exported), str(run_dir)]) == 2
    assert "nothing compared" in _error(capsys)
