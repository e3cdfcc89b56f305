"""``compare`` on serving rows: p99 at a fixed rate, goodput and SLO attainment gate a slower candidate, equal
runs pass, levels of different rates are not compared, and a serving row is never compared with a
single-stream one."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from t2ibench.errors import UserError
from t2ibench.reports.compare import attainment_row, compare, goodput_row, Gate
from t2ibench.reports.export import ServingSummary, load_summary, summarize, write_summary
from tests.serving_store import build_store, named_config, put_level, requests_of

SERVER = {"kind": "server", "rate": 2, "slo_ms": 600}
N = 300


def _served_run(path, scale: float = 1.0, scenario=SERVER, name: str = "served", rate: float = 2.0,
                errors: dict | None = None):
    """One served config, ``N`` requests with lognormal latencies (median 300 ms) times ``scale``."""
    latencies = list(np.random.default_rng(0).lognormal(np.log(300.0), 0.4, N) * scale)
    store, ids = build_store(path, [named_config(name, scenario)])
    with store:
        cid = ids[name]
        put_level(store, cid, requests_of(cid, latencies, errors, gap_s=0.5), duration_s=N / rate,
                  offered_rate=rate)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-compare")
    return {"base": _served_run(root / "base"), "same": _served_run(root / "same"),
            "slow": _served_run(root / "slow", 1.6), "rate4": _served_run(root / "rate4", rate=4.0,
                                                                          scenario={**SERVER, "rate": 4}),
            "single": _served_run(root / "single", scenario="single_stream")}


def _rows(result) -> dict:
    return {r.figure: r for r in result.rows}


def test_equal_runs_pass_and_the_serving_figures_are_compared(runs):
    result = compare(summarize(runs["base"]), summarize(runs["same"]))
    rows = _rows(result)
    assert {"latency_ms_p50", "latency_ms_p99", "goodput", "slo_attainment"} <= set(rows)
    assert "images_per_s" not in rows  # a served level's throughput is its goodput
    assert not result.regressions
    assert all(r.verdict == "within gate" for r in result.rows)
    base = summarize(runs["base"]).configs[0].serving
    latencies = np.random.default_rng(0).lognormal(np.log(300.0), 0.4, N)
    assert base.n_within == int((latencies <= 600).sum()) and base.n_judged == N
    assert rows["goodput"].base == pytest.approx(base.n_within / (N / 2.0))
    out = subprocess.run([sys.executable, "-m", "t2ibench", "compare", str(runs["base"]), str(runs["same"])],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "no regression" in out.stdout, out.stderr


def test_a_slower_candidate_regresses_on_p99_goodput_and_attainment(runs, tmp_path):
    result = compare(summarize(runs["base"]), summarize(runs["slow"]))
    rows = _rows(result)
    for figure in ("latency_ms_p99", "goodput", "slo_attainment", "latency_ms_p50"):
        assert rows[figure].verdict == "regression", (figure, rows[figure])
    assert rows["latency_ms_p99"].cand == pytest.approx(1.6 * rows["latency_ms_p99"].base)
    back = _rows(compare(summarize(runs["slow"]), summarize(runs["base"])))
    assert {back[f].verdict for f in ("latency_ms_p99", "goodput", "slo_attainment")} == {"improvement"}
    # the same through an exported baseline and the CLI: exit 1
    baseline = write_summary(summarize(runs["base"]), tmp_path / "base.json")
    assert load_summary(baseline).configs[0].serving == summarize(runs["base"]).configs[0].serving
    out = subprocess.run([sys.executable, "-m", "t2ibench", "compare", str(baseline), str(runs["slow"])],
                         capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    assert "p99 ms" in out.stdout and "goodput" in out.stdout


def test_a_loose_gate_lets_the_slowdown_pass(runs):
    gates = {"latency_ms_p99": Gate(1.0, True), "latency_ms_p50": Gate(1.0, True), "goodput": Gate(1.0, True),
             "slo_attainment": Gate(0.5, False), "latency_ms_p95": Gate(1.0, True),
             "latency_ms_mean": Gate(1.0, True)}
    assert not compare(summarize(runs["base"]), summarize(runs["slow"]), gates).regressions


def test_levels_of_different_rates_are_not_compared(runs):
    """Matched by name, rate 2 against rate 4: nothing to compare is an error that says why."""
    with pytest.raises(UserError, match="offered rate 2 → 4 req/s; its latency, goodput and attainment are "
                                        "compared only at a fixed rate"):
        compare(summarize(runs["base"]), summarize(runs["rate4"]))


def test_a_serving_row_against_a_single_stream_row_is_refused(runs):
    with pytest.raises(UserError, match="a serving row cannot be compared with a non-serving one"):
        compare(summarize(runs["base"]), summarize(runs["single"]))
    out = subprocess.run([sys.executable, "-m", "t2ibench", "compare", str(runs["single"]), str(runs["base"])],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "serving row cannot be compared" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("share", [0.7, 0.97])
def test_attainment_and_goodput_tests_hold_their_level_when_nothing_changed(share):
    """Two levels drawn from the same share within the SLO: each test calls a change in about 5% of cases."""
    rng = np.random.default_rng(3)
    trials, n = 2000, 300
    false_attainment = false_goodput = 0
    for _ in range(trials):
        a, b = (ServingSummary(2.0, n / 2.0, 600.0, n, n, int(rng.binomial(n, share))) for _ in range(2))
        false_attainment += attainment_row("c", "c", a, b, Gate(0, False)).significant
        false_goodput += goodput_row("c", "c", a, b, Gate(0, True)).significant
    assert false_attainment / trials <= 0.065 and false_goodput / trials <= 0.065
    assert false_attainment / trials >= 0.02  # not a test that never fires
