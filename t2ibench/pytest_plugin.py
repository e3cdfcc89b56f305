"""pytest integration (entry point ``pytest11``): regression checks and pytest-benchmark timing.

- ``t2ibench_regression(suite, config=None, gates=None)`` runs a suite (or one of its configs)
  and fails the test on a regression against its stored baseline,
  ``<--t2ibench-baselines>/<suite>[-<config>].json``, or when nothing could be compared; environment
  differences and unstable timings are pytest warnings. ``--t2ibench-update-baseline`` writes it.
- ``t2ibench_benchmark(suite, config=None)`` times one config with t2ibench's protocol (warm-up
  excluded, CUDA events on GPU) and hands each measured call's time to pytest-benchmark, so its
  storage, ``--benchmark-compare`` and ``--benchmark-compare-fail`` work for diffusion configs.

This module is imported by every pytest session once t2ibench is installed: keep it light.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import pytest

if TYPE_CHECKING:
    from t2ibench.orchestration import Run
    from t2ibench.reports.compare import Comparison
    from t2ibench.suites import Suite

SuiteLike = Union["Suite", str, Path]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("t2ibench", "t2ibench regression testing")
    group.addoption("--t2ibench-baselines", default="t2ibench-baselines", metavar="DIR",
                    help="folder of baseline results files (default: t2ibench-baselines under the rootdir)")
    group.addoption("--t2ibench-update-baseline", action="store_true",
                    help="write the t2ibench baselines instead of checking against them")


def select_config(suite: SuiteLike, config: str | None, keep_reference: bool) -> Suite:
    """The suite, or a copy that runs only ``config`` (a name or config_id), plus its reference if asked."""
    from t2ibench.errors import UserError
    from t2ibench.suites import Suite, load_suite

    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    if config is None:
        return suite
    chosen = [c for c in suite.configs() if config in (c.name, c.config_id) or (keep_reference and c.is_reference)]
    if not any(config in (c.name, c.config_id) for c in chosen):
        raise UserError(f"suite '{suite.name}' has no config '{config}'; "
                        f"it has: {', '.join(c.name for c in suite.configs())}")
    return suite.select(lambda c: c in chosen)


@dataclass
class RegressionCheck:
    baselines: Path
    update: bool
    work_dir: Path

    def __call__(self, suite: SuiteLike, config: str | None = None, *, gates: dict[str, str | float] | None = None,
                 device: str = "cpu", metrics: bool = True) -> Comparison | None:
        from t2ibench.orchestration import execute
        from t2ibench.reports.compare import compare, parse_gate_options
        from t2ibench.reports.compare_cli import render_markdown
        from t2ibench.reports.export import load_summary, summarize, write_summary

        suite = select_config(suite, config, keep_reference=metrics)
        name = suite.name + (f"-{re.sub(r'[^a-z0-9_-]+', '_', config.lower())}" if config else "")
        run = execute(suite, out=self.work_dir / name, device=device, metrics=metrics, fresh=True)
        path = self.baselines / f"{name}.json"
        if self.update:
            write_summary(summarize(run.run_dir), path)
            return None
        if not path.is_file():
            pytest.fail(f"no t2ibench baseline at {path}; run pytest with --t2ibench-update-baseline to write it",
                        pytrace=False)
        from t2ibench.errors import UserError

        try:  # comparing nothing fails the test: a gate must never pass silently
            result = compare(load_summary(path), summarize(run.run_dir),
                             parse_gate_options([f"{k}={v}" for k, v in (gates or {}).items()]))
        except UserError as e:
            pytest.fail(f"t2ibench baseline {path}: {e}", pytrace=False)
        for warning in result.warnings:  # environments differ, unstable timings: in pytest's warnings summary
            warnings.warn(f"t2ibench baseline {path.name}: {warning}", stacklevel=2)
        if result.regressions:
            pytest.fail(render_markdown(result), pytrace=False)
        return result


@pytest.fixture
def t2ibench_regression(request: pytest.FixtureRequest, tmp_path: Path) -> RegressionCheck:
    """``t2ibench_regression(suite, config=None, gates=None)``: fail on a regression against the baseline."""
    baselines = Path(request.config.getoption("--t2ibench-baselines"))
    if not baselines.is_absolute():
        baselines = Path(request.config.rootpath) / baselines
    return RegressionCheck(baselines, request.config.getoption("--t2ibench-update-baseline"), tmp_path)


def benchmark_config(benchmark, suite: SuiteLike, config: str | None, out: Path, device: str = "cpu") -> Run:
    """Run one config with t2ibench and replay its measured call times into pytest-benchmark.

    pytest-benchmark times each round with its timer; here that timer is a clock that each round
    advances by the next call time t2ibench measured, so its statistics are t2ibench's.
    """
    from t2ibench.errors import UserError
    from t2ibench.orchestration import execute
    from t2ibench.reports.export import summarize

    suite = select_config(suite, config, keep_reference=False)
    if len(suite.configs()) != 1:
        raise UserError(f"suite '{suite.name}' has {len(suite.configs())} configs; name the one to time")
    run = execute(suite, out=out, device=device, metrics=False, fresh=True)
    measured = summarize(run.run_dir).configs[0]
    if not measured.latency_samples:
        pytest.fail(f"config '{measured.name}' produced no timed call (status {measured.status})", pytrace=False)
    clock = [0.0]
    durations = iter(ms / 1000.0 for ms in measured.latency_samples)

    def t2ibench_replay_timer() -> float:
        return clock[0]

    def measured_call() -> None:
        clock[0] += next(durations)

    benchmark._timer = t2ibench_replay_timer
    benchmark.pedantic(measured_call, rounds=len(measured.latency_samples), iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(t2ibench_config=measured.name, config_id=measured.config_id,
                                warmup_calls=suite.timing.warmup, images_per_call=measured.batch_size,
                                peak_rss_mb=measured.figures.get("peak_rss_mb"),
                                peak_vram_mb=measured.figures.get("peak_vram_mb"))
    return run


@pytest.fixture
def t2ibench_benchmark(benchmark, tmp_path: Path):
    """``t2ibench_benchmark(suite, config=None, device="cpu")`` → Run; one config timed into ``benchmark``."""

    def run(suite: SuiteLike, config: str | None = None, device: str = "cpu") -> Run:
        return benchmark_config(benchmark, suite, config, tmp_path / "t2ibench-run", device)

    return run
