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
