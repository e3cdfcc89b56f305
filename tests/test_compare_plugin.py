"""The pytest plugin, in a child pytest: baselines written, then checked (one passing, one a
regression); one config timed into pytest-benchmark with t2ibench's measured call times."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import yaml

import t2ibench
from t2ibench.pytest_plugin import RegressionCheck
from tests.conftest import suite_dict

WIDE = {g: "100000%" for g in ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s")}
TESTS = f'''
SUITE = __file__.replace("test_child.py", "suite.yaml")


def test_fast(t2ibench_regression):
    t2ibench_regression(SUITE, config="fast", gates={WIDE!r}, metrics=False)


def test_default(t2ibench_regression):
    t2ibench_regression(SUITE, config="default", gates={WIDE!r}, metrics=False)


def test_timing(t2ibench_benchmark):
    run = t2ibench_benchmark(SUITE, config="fast")
    assert len(run.cells()) == 4
'''


def _pytest(folder, *args: str) -> subprocess.CompletedProcess:
    plugin = [] if entry_points(group="pytest11", name="t2ibench") else ["-p", "t2ibench.pytest_plugin"]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin,
                           f"--rootdir={folder}", "--t2ibench-baselines", str(folder / "baselines"), *args,
                           str(folder / "test_child.py")], check=False, capture_output=True, text=True, cwd=folder)


@pytest.fixture
def suite_path(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite_dict(name="plug", seeds=[0, 1], prompts=["a red cube", "a lighthouse"],
                                              include=[{"name": "fast", "steps": 2}])))
    return path


def test_plugin_baselines_and_benchmark(tmp_path, suite_path):
    (tmp_path / "test_child.py").write_text(TESTS)
    written = _pytest(tmp_path, "--t2ibench-update-baseline", "-k", "fast or timing",
                      "--benchmark-json", str(tmp_path / "bench.json"))
    assert written.returncode == 0, written.stdout + written.stderr
    fast = json.loads((tmp_path / "baselines" / "plug-fast.json").read_text())
    assert [c["name"] for c in fast["configs"]] == ["fast"]
    bench = json.loads((tmp_path / "bench.json").read_text())["benchmarks"][0]
    assert bench["stats"]["rounds"] == 4 and bench["extra_info"]["t2ibench_config"] == "fast"
    assert 0 < bench["stats"]["median"] < 60 and bench["options"]["timer"].endswith("t2ibench_replay_timer")

    default = next(c for c in t2ibench.load_suite(suite_path).configs() if c.name == "default")
    tampered = dict(fast["configs"][0], name="default", config_id=default.config_id,
                    figures=dict(fast["configs"][0]["figures"], peak_rss_mb=1.0))  # it used far less memory
    (tmp_path / "baselines" / "plug-default.json").write_text(json.dumps(dict(fast, configs=[tampered])))
    checked = _pytest(tmp_path, "-k", "fast or default", "-rA")
    assert checked.returncode == 1
    assert "PASSED test_child.py::test_fast" in checked.stdout and "FAILED test_child.py::test_default" in checked.stdout
    assert "peak_rss_mb" in checked.stdout and "❌ regression" in checked.stdout


def test_missing_baseline_says_how_to_write_it(tmp_path, suite_path):
    check = RegressionCheck(tmp_path / "baselines", update=False, work_dir=tmp_path / "work")
    with pytest.raises(pytest.fail.Exception, match="--t2ibench-update-baseline"):
        check(suite_path, config="fast", metrics=False)
