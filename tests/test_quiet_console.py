"""A quiet console: other packages' warnings and log lines go to run.log (``--verbose`` shows them too); the
ETA comes from measured cells after warm-up; scoring has its own progress; the summary recommends."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml
from rich.console import Console

import fake_backend
import noisy_backend
from t2ibench.cli import main
from t2ibench.progress import EtaColumn, EtaEstimator, RichObserver

fake_backend.register()
noisy_backend.register()
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _suite(tmp_path: Path, backend: str = "noisy", **extra) -> Path:
    suite = {"name": "quiet", "model": "fake:model", "prompts": ["a red cube", "a cat"], "seeds": [0, 1],
             "defaults": {"backend": backend, "steps": 2, "width": 16, "height": 16},
             "matrix": {"steps": [1, 2]}, "timing": {"warmup": 1, "repeats": 1},
             "objectives": {"latency_ms_p50": "min"}, **extra}
    path = tmp_path / "quiet.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


# --- run.log -------------------------------------------------------------------------------------

@pytest.mark.parametrize("verbose", [False, True])
def test_other_packages_warnings_go_to_run_log_and_verbose_shows_them(tmp_path, capsys, verbose):
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # pytest's own filters ignore FutureWarning
        code = main(["run", str(_suite(tmp_path)), "--out", str(out), "--no-metrics"] + (["--verbose"] * verbose))
    assert code == 0
    terminal = capsys.readouterr()
    log = (out / "run.log").read_text()
    for noise in noisy_backend.NOISES:
        assert log.count(noise) == 1, noise  # one load group: one model load
        assert (noise in terminal.err) == verbose, noise
        assert noise not in terminal.out
    assert "results:" in terminal.out  # t2ibench's own output is unchanged


def test_a_plain_cli_run_prints_no_line_of_another_package(tmp_path):
    """A real process: also raw writes to fd 2 (C extensions) and what comes before the run directory exists."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-W", "always", str(TESTS / "noisy_backend.py"), "run",
                           str(_suite(tmp_path)), "--out", str(out), "--no-metrics"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**_env(), "PYTHONPATH": f"{REPO}{':'}{TESTS}"})
    assert proc.returncode == 0, proc.stderr
    log = (out / "run.log").read_text()
    for noise in (*noisy_backend.NOISES, noisy_backend.C_LEVEL):
        assert noise not in proc.stderr and noise not in proc.stdout, noise
        assert log.count(noise) == 2, noise  # once before the run directory existed, once at the model's load
    assert f"writing {out}" in proc.stderr and "all cells" in proc.stderr  # t2ibench's own lines stay
    assert "run.log" in proc.stdout


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_log_holds_what_comes_before_the_run_directory_and_restores_the_console(tmp_path):
    import logging

    from t2ibench.runlog import ThirdPartyLog

    handle, showwarning = logging.Handler.handle, warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with ThirdPartyLog(capture_fd=False) as log:
            logging.getLogger("somelib").warning("early line")
            warnings.warn_explicit("early warning", UserWarning, "/site-packages/somelib/x.py", 3)
            assert "early line" in log.text() and "early warning" in log.text()
            log.attach(tmp_path)
            logging.getLogger("somelib").warning("late line")
    assert (tmp_path / "run.log").read_text().splitlines()[0].endswith("early line")
    assert "late line" in (tmp_path / "run.log").read_text()
    assert logging.Handler.handle is handle and warnings.showwarning is showwarning


# --- ETA -----------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_eta_after_warm_up_is_the_cells_left_times_the_measured_cell_time():
    clock = Clock()
    eta = EtaEstimator(total=20, clock=clock)
    eta.config_started("a")
    clock.now = 30.0  # load + warm-up + compile + the first call
    eta.advanced("a", 1)
    assert eta.seconds_left() is None  # nothing measured yet: no made-up number
    for _ in range(4):
        clock.now += 1.0
        eta.advanced("a", 1)
    assert eta.seconds_left() == pytest.approx(15 * 1.0)  # not 34 s / 5 cells × 15 (~102 s)
    eta.config_ended("a")
    eta.config_started("b")
    clock.now += 25.0  # the next config's load and warm-up: not a cell time either
    eta.advanced("b", 2)
    clock.now += 2.0
    eta.advanced("b", 2)  # a batch of two in 2 s: still 1 s per cell
    assert eta.seconds_left() == pytest.approx(11 * 1.0)
    eta.advanced("b", 3, timed=False)  # skipped cells: done, but took no time
    assert eta.done == 12 and eta.seconds_left() == pytest.approx(8 * 1.0)


def test_eta_with_configs_running_at_once_divides_by_them():
    clock = Clock()
    eta = EtaEstimator(total=100, clock=clock)
    for c in ("a", "b"):
        eta.config_started(c)
        eta.advanced(c, 1)
    for _ in range(3):
        clock.now += 2.0
        eta.advanced("a", 1)
        eta.advanced("b", 1)
    assert eta.seconds_left() == pytest.approx((100 - 8) * 2.0 / 2)


def test_the_progress_bar_shows_the_measured_eta():
    class Config:
        config_id, name = "c1", "steps=2"

    clock = Clock()
    observer = RichObserver(Console(file=io.StringIO()), clock=clock)
    observer.run_started(10)
    observer.config_started(Config, 10)
    clock.now = 40.0
    observer.cells_advanced(Config, 1)
    overall = observer.progress.tasks[0]
    assert overall.fields["eta_at"] is None and EtaColumn().render(overall).plain == "ETA …"
    for _ in range(3):
        clock.now += 0.5
        observer.cells_advanced(Config, 1)
    overall = observer.progress.tasks[0]
    assert overall.fields["eta_at"] - time.monotonic() == pytest.approx(6 * 0.5, abs=0.5)
    assert EtaColumn().render(overall).plain in ("ETA 0:00:03", "ETA 0:00:02")


# --- scoring progress ----------------------------------------------------------------------------

def test_feature_extraction_reports_progress_per_batch(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from t2ibench.metrics.features import extract
    from t2ibench.metrics.networks import Extractor

    paths = []
    for i in range(7):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((8, 8, 3), i * 30, np.uint8)).save(paths[-1])
    extractor = Extractor(key="toy|w=1", random_weights=True, module=torch.nn.Flatten(),
                          preprocess=lambda img: torch.tensor(np.array(img), dtype=torch.float32))
    calls = []
    features = extract(paths, extractor, batch_size=3, num_workers=0, progress=lambda *a: calls.append(a))
    assert features.shape == (7, 8 * 8 * 3)
    assert calls == [("toy", 0, 7), ("toy", 3, 0), ("toy", 3, 0), ("toy", 1, 0)]

    observer = RichObserver(Console(file=io.StringIO()))
    for call in calls + [("toy", 0, 2), ("toy", 2, 0)]:  # a second config's images add to the same bar
        observer.scoring(*call)
    (bar,) = observer.progress.tasks
    assert bar.description == "scoring toy" and bar.total == 9 and bar.completed == 9


def test_a_run_hands_its_observers_scoring_hook_to_the_metrics(tmp_path, monkeypatch):
    from t2ibench.metrics import evaluate as evaluate_module
    from t2ibench.orchestration import execute
    from t2ibench.suites import load_suite

    seen = []
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **kw: seen.append(kw.get("progress")) or [])

    observer = RichObserver(Console(file=io.StringIO()))
    suite = load_suite(_suite(tmp_path, backend="fake", metrics={"clip_score": {"model": "random:ViT-B-32"}}))
    execute(suite, out=tmp_path / "run", device="cpu", observer=observer)
    assert seen == [observer.scoring]


# --- the recommendation in the summary -----------------------------------------------------------

def test_the_summary_prints_the_recommendation(tmp_path, capsys):
    assert main(["run", str(_suite(tmp_path, backend="fake")), "--out", str(tmp_path / "a"), "--no-metrics"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("recommended:"))
    assert "the lowest latency_ms_p50" in line and ("steps=1" in line or "steps=2" in line)

    impossible = {"latency_ms_p50": {"max": 1e-9}}
    assert main(["run", str(_suite(tmp_path, backend="fake", constraints=impossible)), "--out",
                 str(tmp_path / "b"), "--no-metrics"]) == 0
    out = capsys.readouterr().out
    assert "no config meets the constraints" in out
    assert "ruled out: steps=1: latency_ms_p50" in out


def test_recommendation_lines_fit_the_width():
    from t2ibench.reports.recommend import Recommendation
    from t2ibench.reports.summary import recommendation_lines

    rec = Recommendation("abc", "steps=4", "Recommended: steps=4 (abc): the lowest latency_ms_p50 (12.5) among 2 of 3 "
                         "configs. Ruled out: 1 (steps=8: peak_vram_mb 13100 > max 12000).",
                         {"steps=8": ["peak_vram_mb 13100 > max 12000"]})
    lines = recommendation_lines(rec, 100)
    assert lines == ["recommended: steps=4 (abc): the lowest latency_ms_p50 (12.5) among 2 of 3 configs.",
                     "ruled out: steps=8: peak_vram_mb 13100 > max 12000"]
    assert all(len(x) <= 40 for x in recommendation_lines(rec, 40))
