"""No false alarms: noise alone must not fail, and the statistics catch a real shift."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

import t2ibench
from t2ibench.reports.compare import Gate, compare
from t2ibench.reports.export import MetricSummary, RunSummary, load_summary
from tests.conftest import suite_dict

TRIALS = 20


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(suite_dict(name="noise", seeds=list(range(8)),
                                              defaults={"steps": 2, "width": 64, "height": 64})))
    return load_summary(t2ibench.run(path, out=root / "run", device="cpu", metrics=False).run_dir)


def _with(summary: RunSummary, **changes) -> RunSummary:
    return dataclasses.replace(summary, configs=[dataclasses.replace(summary.configs[0], **changes)])


def test_resampled_halves_of_one_run_do_not_alarm(one_run):
    samples = np.array(one_run.configs[0].latency_samples)
    assert len(samples) == 24
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(TRIALS):
        order = rng.permutation(len(samples))
        a, b = samples[order[:12]], samples[order[12:]]
        result = compare(_with(one_run, latency_samples=list(a)), _with(one_run, latency_samples=list(b)))
        alarms += bool(result.regressions)
    assert alarms <= 1


def test_identical_runs_do_not_alarm(one_run):
    assert not compare(one_run, one_run).regressions


def _paired(base: np.ndarray, cand: np.ndarray) -> tuple[MetricSummary, MetricSummary]:
    keys = [f"p{i // 4}:{i % 4}" for i in range(len(base))]
    return (MetricSummary(float(base.mean()), None, None, len(base), False, dict(zip(keys, base))),
            MetricSummary(float(cand.mean()), None, None, len(cand), False, dict(zip(keys, cand))))


def test_paired_bootstrap_knows_noise_from_change(one_run):
    rng = np.random.default_rng(1)
    gates = {"clip_score": Gate(0.1, relative=False)}
    alarms = 0
    for _ in range(TRIALS):
        truth = rng.normal(30, 3, 32)  # per-image quality; both runs measure it with the same noise
        base, cand = _paired(truth + rng.normal(0, 0.5, 32), truth + rng.normal(0, 0.5, 32))
        alarms += bool(compare(_with(one_run, metrics={"clip_score": base}),
                               _with(one_run, metrics={"clip_score": cand}), gates).regressions)
    assert alarms <= 1
    truth = rng.normal(30, 3, 32)
    base, cand = _paired(truth, truth - 1.0 + rng.normal(0, 0.5, 32))
    worse = compare(_with(one_run, metrics={"clip_score": base}), _with(one_run, metrics={"clip_score": cand}), gates)
    assert [r.figure for r in worse.regressions] == ["clip_score"]
    better = compare(_with(one_run, metrics={"clip_score": cand}), _with(one_run, metrics={"clip_score": base}), gates)
    assert not better.regressions and next(r for r in better.rows if r.figure == "clip_score").verdict == "improvement"


def test_set_metrics_use_ci_overlap(one_run):
    fid = lambda v, lo, hi: MetricSummary(v, lo, hi, 24, False)
    overlapping = compare(_with(one_run, metrics={"fid": fid(20.0, 18.0, 22.0)}),
                          _with(one_run, metrics={"fid": fid(23.0, 21.0, 25.0)}))
    assert next(r for r in overlapping.rows if r.figure == "fid").verdict == "not significant"
    apart = compare(_with(one_run, metrics={"fid": fid(20.0, 18.0, 22.0)}),
                    _with(one_run, metrics={"fid": fid(30.0, 27.0, 33.0)}))
    assert [r.figure for r in apart.regressions] == ["fid"]


def test_compare_both_ways_mirrors():
    """compare A B and compare B A resample alike: the CI of the inverse ratio is the inverse CI, and
    a change is significant both ways or neither (a borderline shift once failed one way only)."""
    from t2ibench.reports.compare import LATENCY_FIGURES, latency_row
    from t2ibench.reports.export import ConfigSummary

    rng = np.random.default_rng(3)
    for shift in (1.0, 1.02, 1.04, 1.08):
        a, b = rng.lognormal(5, 0.05, 18), shift * rng.lognormal(5, 0.05, 18)
        side = [ConfigSummary("c0", "c", "m", {}, "ok", {}, list(x), {}) for x in (a, b)]
        for figure in LATENCY_FIGURES:
            ab = latency_row("c", "c0", figure, side[0], side[1], Gate(0.0, True))
            ba = latency_row("c", "c0", figure, side[1], side[0], Gate(0.0, True))
            if ab is None or ab.ci is None:
                continue
            assert ab.significant == ba.significant
            assert ab.ci[0] == pytest.approx(1 / ba.ci[1]) and ab.ci[1] == pytest.approx(1 / ba.ci[0])
