"""Serving figures from recorded requests: exact SLO accounting on a known delay distribution, distribution-free
percentile CIs that cover at their rate, results.csv's serving columns, the highest rate within the SLO, the
recommendation's constraints at a given rate, and the serving plots and report sections."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from t2ibench.reports.serving import level_figures, max_rate_within_slo, quantile_ci
from t2ibench.store import RunStore
from tests.serving_store import build_store, put_level, requests_of, serving_suite

# 200 requests: latencies 10, 20, …, 2000 ms; 6 of them errors (2 rejected, 3 timeouts, 1 connection)
LATENCIES = [10.0 * (i + 1) for i in range(200)]
ERRORS = {3: "rejected", 50: "rejected", 120: "timeout", 121: "timeout", 199: "timeout", 7: "connection"}


def test_slo_attainment_and_goodput_are_exact_on_a_known_delay_distribution():
    rows = [r.__dict__ for r in requests_of("c", LATENCIES, ERRORS, queue_ms=4.0, batch=2)]
    f = level_figures(rows, duration_s=20.0, offered_rate=10.0, slo_ms=505.0)
    # within 505 ms: latencies 10..500 → indices 0..49 (50 requests), less the errors among them (3, 7)
    assert f["slo_attainment"] == 48 / 200  # over ALL scheduled requests: errors are misses
    assert f["goodput"] == 48 / 20.0
    assert f["achieved_rate"] == 194 / 20.0
    assert f["error_rate"] == 6 / 200
    assert f["rejected"] == 2
    assert json.loads(f["errors_by_kind"]) == {"connection": 1, "rejected": 2, "timeout": 3}
    ok = np.array([ms for i, ms in enumerate(LATENCIES) if i not in ERRORS])
    for column, p in (("latency_ms_p50", 50), ("latency_ms_p90", 90), ("latency_ms_p95", 95),
                      ("latency_ms_p99", 99)):
        assert f[column] == pytest.approx(np.percentile(ok, p))  # over the ok requests only
    assert f["latency_ms_max"] == 1990.0  # the 2000 ms request timed out
    assert f["queue_ms_mean"] == 4.0 and f["compute_ms_mean"] == pytest.approx(ok.mean() - 4.0)
    assert f["mean_batch"] == 2.0 and f["offered_rate"] == 10.0 and f["slo_ms"] == 505.0


def test_a_requests_own_slo_wins_over_the_levels():
    rows = [r.__dict__ for r in requests_of("c", [100.0, 200.0, 300.0, 400.0], slo_ms={3: 450.0, 0: 50.0})]
    f = level_figures(rows, duration_s=2.0, offered_rate=2.0, slo_ms=250.0)
    # 100 vs its own 50: miss; 200 ≤ 250 hit; 300 > 250 miss; 400 ≤ its own 450 hit
    assert f["slo_attainment"] == 0.5 and f["goodput"] == 1.0
    none = level_figures(rows[1:3], duration_s=2.0, offered_rate=2.0, slo_ms=None)
    assert math.isnan(none["slo_attainment"]) and math.isnan(none["goodput"]) and math.isnan(none["slo_ms"])


def test_a_level_without_ok_requests_has_no_latency_but_counts_its_misses():
    rows = [r.__dict__ for r in requests_of("c", [5.0, 6.0], {0: "rejected", 1: "rejected"})]
    f = level_figures(rows, duration_s=1.0, offered_rate=2.0, slo_ms=100.0)
    assert math.isnan(f["latency_ms_p99"]) and math.isnan(f["queue_ms_mean"]) and math.isnan(f["mean_batch"])
    assert f["slo_attainment"] == 0.0 and f["goodput"] == 0.0 and f["error_rate"] == 1.0 and f["rejected"] == 2


@pytest.mark.parametrize("q,n", [(0.5, 40), (0.5, 301), (0.99, 500), (0.99, 1500)])
def test_the_percentile_ci_covers_at_its_nominal_rate(q, n):
    """Lognormal latencies: the true quantile is known; 2000 simulated levels."""
    from scipy.stats import lognorm

    truth = lognorm(s=0.8, scale=300.0).ppf(q)
    rng = np.random.default_rng(7)
    trials = 2000
    hits = 0
    for _ in range(trials):
        lo, hi = quantile_ci(rng.lognormal(np.log(300.0), 0.8, n), q)
        assert lo <= hi
        hits += lo <= truth <= hi
    coverage = hits / trials
    se = math.sqrt(0.95 * 0.05 / trials)
    assert coverage >= 0.95 - 3 * se, coverage
    assert coverage <= 0.995, f"{coverage}: far too wide to be useful"


def test_the_percentile_ci_contains_its_estimate_and_is_nan_when_n_is_too_small():
    x = np.random.default_rng(1).exponential(100.0, 400)
    for q in (0.5, 0.99):
        lo, hi = quantile_ci(x, q)
        assert lo <= np.percentile(x, q * 100) <= hi
    # the upper bound x_(n) covers with probability 1 - 0.99^n: at least 0.975 from n = 368 on
    smallest = math.ceil(math.log(0.025) / math.log(0.99))
    assert smallest == 368
    assert all(math.isnan(v) for v in quantile_ci(x[:smallest - 1], 0.99))
    assert quantile_ci(x[:smallest], 0.99)[1] == x[:smallest].max()
    assert all(math.isnan(v) for v in quantile_ci(x[:5], 0.5))


def test_max_rate_within_slo_reads_each_family_of_the_sweep():
    def row(cid, rate, share, steps=2, search=None):
        scenario = {"kind": "server", "rate": rate, "slo_ms": 500.0, "search": search}
        return {"config_id": cid, "model": "m", "knobs": {"steps": steps, "scenario": scenario},
                "offered_rate": rate, "slo_attainment": share}

    rows = [row("a1", 1, 1.0), row("a2", 2, 0.995), row("a4", 4, 0.9),  # family a: 2
            row("b1", 1, 0.98, steps=3), row("b2", 2, 0.5, steps=4),  # b1 alone misses; b2 is another family
            row("s", 3.2, 0.95, search={"slo_ms": 500.0, "attainment": 0.9})]  # its own target
    got = max_rate_within_slo(rows)
    assert got["a1"] == got["a2"] == got["a4"] == 2
    assert math.isnan(got["b1"]) and math.isnan(got["b2"])
    assert got["s"] == 3.2
    assert max_rate_within_slo(rows, attainment=0.9)["a4"] == 4


@pytest.fixture
def sweep(tmp_path):
    """Rates 1, 2, 4 (SLO 500 ms) and a single-stream config; attainments 1, 0.995, 0.6."""
    suite = serving_suite([{"kind": "server", "rate": [1, 2, 4], "slo_ms": 500}, "single_stream"])
    store, ids = build_store(tmp_path / "run", suite)
    names = list(ids)
    for name, rate, slow in zip(names[:3], (1, 2, 4), (0, 1, 80)):
        lat = [100.0 + i for i in range(200 - slow)] + [900.0] * slow
        put_level(store, ids[name], requests_of(ids[name], lat, queue_ms=10.0, batch=1), duration_s=200 / rate,
                  offered_rate=float(rate))
    # a search probe of rate 1 that is not final: never reported
    put_level(store, ids[names[0]], requests_of(ids[names[0]], [5000.0] * 10, level=1), duration_s=1.0,
              offered_rate=9.0, level=1, final=False)
    yield store, ids
    store.close()


def test_results_rows_carry_the_serving_columns(sweep):
    from t2ibench.reports.tables import result_records, results_frame

    store, ids = sweep
    rows = {r["config"]: r for r in result_records(store)}
    r1, r2, r4, single = (rows[n] for n in ids)
    assert r1["scenario"] == "server rate=1 slo_ms=500" and single["scenario"] == "single_stream"
    assert r1["offered_rate"] == 1.0 and r1["slo_attainment"] == 1.0 and r2["slo_attainment"] == 0.995
    assert r4["slo_attainment"] == 120 / 200 and r4["goodput"] == 120 / 50
    assert r1["latency_ms_p50"] == pytest.approx(np.percentile([100.0 + i for i in range(200)], 50))
    assert r1["images_per_s"] == r1["achieved_rate"] == 1.0  # 200 ok images over 200 s
    assert r1["latency_ms_max"] == 299.0  # the non-final probe's 5000 ms requests are not in it
    assert r1["slo_max_rate"] == r4["slo_max_rate"] == 2.0
    assert single["latency_ms_p50"] == 100.0 and math.isnan(single["latency_ms_p99"])
    assert math.isnan(single["slo_max_rate"]) and single["errors_by_kind"] == ""
    frame = results_frame(store, rows=result_records(store))
    columns = list(frame.columns)
    contract = ["offered_rate", "achieved_rate", "latency_ms_p90", "latency_ms_p99", "latency_ms_max",
                "queue_ms_mean", "compute_ms_mean", "slo_ms", "slo_attainment", "goodput", "error_rate",
                "rejected", "mean_batch"]
    assert [c for c in columns if c in contract] == contract
    assert columns.index("offered_rate") > columns.index("pareto")
    assert "slo_max_rate" in columns and "scenario" in columns


def test_constraints_on_serving_columns_and_at_a_given_rate(sweep):
    from t2ibench.reports.recommend import recommend
    from t2ibench.reports.tables import result_records

    store, ids = sweep
    rows = result_records(store)
    names = list(ids)
    rec = recommend(rows, {"goodput": "max"}, {"latency_ms_p99": {"max": 800}})
    assert rec.config == names[1]  # rate 4's p99 is 900 ms; the single-stream row has no p99
    assert "latency_ms_p99 not measured" in rec.ruled_out[names[3]]
    at_1 = recommend(rows, {"goodput": "max"}, {"latency_ms_p99": {"max": 800, "rate": 1}})
    assert at_1.config == names[0]
    assert any("offered_rate" in why for why in at_1.ruled_out[names[1]])
    assert "at 1 req/s" in at_1.message


def test_the_reports_show_a_serving_section_with_its_plots(sweep):
    from PIL import Image

    from t2ibench.metrics.evaluate import MetricResult
    from t2ibench.reports import write_reports

    store, ids = sweep
    store.put_metrics([MetricResult(cid, "clip_score", 30.0 + i, 29.0 + i, 31.0 + i, False, 2)
                       for i, cid in enumerate(ids.values())])
    out = write_reports(store, ("html", "md", "csv"))
    plots = store.run_dir / "plots"
    for stem in ("serving_latency", "serving_attainment", "clip_score_vs_goodput"):
        with Image.open(plots / f"{stem}.png") as image:
            assert image.size[0] > 300 and image.size[1] > 200
        assert (plots / f"{stem}.svg").stat().st_size > 1000
    html = out["html"].read_text()
    assert '<h2 id="serving">Serving</h2>' in html and "max rate in SLO" in html
    assert "rate=1 slo_ms=500" in html
    serving_part = html.split('<h2 id="serving">')[1]
    assert "latency against throughput" in serving_part and "SLO attainment against offered rate" in serving_part
    assert "latency against throughput" not in html.split('<h2 id="serving">')[0]  # not among the other plots
    md = out["md"].read_text()
    assert "## Serving" in md and "2 req/s within the SLO 500 ms (≥ 99% of requests)" in md
    import pandas as pd

    csv = pd.read_csv(store.run_dir / "results.csv")
    assert list(csv["slo_max_rate"].iloc[:3]) == [2.0, 2.0, 2.0] and pd.isna(csv["slo_max_rate"].iloc[3])


def test_a_run_without_load_levels_has_no_serving_section(tmp_path):
    from t2ibench.reports import write_reports

    for name, scenarios in (("single", ["single_stream"]), ("unmeasured", ["single_stream", "offline"])):
        store, ids = build_store(tmp_path / name, serving_suite(scenarios))
        with store:  # the offline config has no level recorded (it failed, say): nothing to show either
            out = write_reports(store, ("html", "md"))
            assert '<h2 id="serving">' not in out["html"].read_text() and "## Serving" not in out["md"].read_text()
            assert not (store.run_dir / "plots" / "serving_latency.png").exists()
    with RunStore.open(tmp_path / "unmeasured", write=True) as store:  # once its level is in, it shows
        cid = ids[list(ids)[1]]
        put_level(store, cid, requests_of(cid, [100.0, 200.0]), duration_s=1.0, offered_rate=None)
        out = write_reports(store, ("html", "md"))
        assert '<h2 id="serving">' in out["html"].read_text() and "## Serving" in out["md"].read_text()


def test_the_cli_summary_says_the_highest_rate_within_the_slo(sweep, monkeypatch):
    import io
    import types

    from rich.console import Console

    from t2ibench import cli
    from t2ibench.reports.recommend import Recommendation
    from t2ibench.reports.tables import result_records, results_frame

    store, ids = sweep
    frame = results_frame(store, rows=result_records(store))
    run = types.SimpleNamespace(results=lambda: frame, run_dir=store.run_dir, report_path=store.run_dir / "r.html",
                                executor=lambda: {"name": "local", "actors": []},
                                recommendation=lambda: Recommendation(None, None, "No objectives set."),
                                suite={"name": "sv", "configs": []})
    console = Console(width=200, file=io.StringIO(), color_system=None, highlight=False)
    monkeypatch.setattr(cli, "_console", lambda stderr=False: console)
    cli._print_summary(run)
    assert "serving: scenario=server slo_ms=500: 2 req/s within the SLO 500 ms (≥ 99% of requests)" \
        in console.file.getvalue()


def test_a_constraint_at_a_rate_is_checked_with_the_suite(write_suite):
    from t2ibench.errors import UserError
    from t2ibench.suites.loader import load_suite

    scenario = {"kind": "server", "rate": [1, 2], "slo_ms": 500}
    suite = load_suite(write_suite(matrix={"scenario": [scenario]}, objectives={"goodput": "max"},
                                   constraints={"latency_ms_p99": {"max": 5000, "rate": 2}}))
    assert suite.constraints["latency_ms_p99"].rate == 2
    with pytest.raises(UserError, match=r"suite.yaml:\d+: constraints.latency_ms_p99.rate"):
        load_suite(write_suite(matrix={"scenario": [scenario]}, constraints={"latency_ms_p99": {"max": 1, "rate": 0}}))
