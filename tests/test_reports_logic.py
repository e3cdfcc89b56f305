"""Pareto frontier, recommendation and LaTeX on hand-built cases."""

from __future__ import annotations

import math
import re

from t2ibench.reports.latex import escape_latex, render_latex
from t2ibench.reports.pareto import pareto_front
from t2ibench.reports.recommend import recommend

NAN = math.nan


def test_pareto_two_objectives_min_min():
    pts = [[1, 5], [2, 3], [3, 4], [4, 1], [2, 6]]
    assert pareto_front(pts, ["min", "min"]) == [True, True, False, True, False]


def test_pareto_mixed_directions():
    # latency min, quality max
    pts = [[10, 0.30], [20, 0.35], [15, 0.29], [30, 0.35], [5, 0.10]]
    assert pareto_front(pts, ["min", "max"]) == [True, True, False, False, True]


def test_pareto_three_objectives():
    pts = [[1, 1, 1], [0, 2, 2], [2, 0, 2], [2, 2, 0], [2, 2, 2], [1, 1, 2]]
    assert pareto_front(pts, ["min", "min", "min"]) == [True, True, True, True, False, False]


def test_pareto_duplicates_are_all_kept_and_nan_never_on_front():
    pts = [[1, 2], [1, 2], [NAN, 0], [0, NAN], [3, 3]]
    assert pareto_front(pts, ["min", "min"]) == [True, True, False, False, False]


def test_pareto_ties_on_leading_objectives_are_settled_by_the_last():
    pts = [[1, 2, 5], [1, 2, 3], [1, 2, 4], [1, 2, 3]]
    assert pareto_front(pts, ["min", "min", "min"]) == [False, True, False, True]
    assert pareto_front(pts, ["min", "min", "max"]) == [True, False, False, False]


def test_pareto_nan_does_not_dominate():
    assert pareto_front([[NAN, NAN], [5, 5]], ["min", "max"]) == [False, True]


ROWS = [
    {"config": "fast", "config_id": "a", "latency_ms_p95": 800, "peak_vram_mb": 9000, "clip_score": 30.0},
    {"config": "good", "config_id": "b", "latency_ms_p95": 1900, "peak_vram_mb": 11000, "clip_score": 32.5},
    {"config": "best", "config_id": "c", "latency_ms_p95": 2600, "peak_vram_mb": 11500, "clip_score": 33.0},
    {"config": "huge", "config_id": "d", "latency_ms_p95": 1500, "peak_vram_mb": 15000, "clip_score": 34.0},
]


def test_recommendation_under_constraints_names_best_and_rulings():
    rec = recommend(ROWS, {"clip_score": "max", "latency_ms_p95": "min"},
                    {"peak_vram_mb": {"max": 12000}, "latency_ms_p95": {"max": 2000}})
    assert rec.config == "good" and rec.config_id == "b"
    assert rec.ruled_out == {"best": ["latency_ms_p95 2600 > max 2000"], "huge": ["peak_vram_mb 1.5e+04 > max 1.2e+04"]}
    assert "highest clip_score (32.5)" in rec.message and "2 of 4 configs" in rec.message


def test_recommendation_ties_broken_by_next_objective():
    rows = [dict(ROWS[0], clip_score=32.5), ROWS[1]]
    rec = recommend(rows, {"clip_score": "max", "latency_ms_p95": "min"}, {})
    assert rec.config == "fast"


def test_every_later_objective_breaks_ties_whatever_the_row_order():
    # a and b tie on clip_score; b, c tie on clip and latency; the third objective (VRAM, min) decides
    rows = [
        {"config": "a", "config_id": "1", "clip_score": 32.0, "latency_ms_p95": 900, "peak_vram_mb": 8000},
        {"config": "b", "config_id": "2", "clip_score": 32.0, "latency_ms_p95": 700, "peak_vram_mb": 9000},
        {"config": "c", "config_id": "3", "clip_score": 32.0, "latency_ms_p95": 700, "peak_vram_mb": 7000},
        {"config": "d", "config_id": "4", "clip_score": 31.0, "latency_ms_p95": 100, "peak_vram_mb": 1000},
    ]
    objectives = {"clip_score": "max", "latency_ms_p95": "min", "peak_vram_mb": "min"}
    for order in (rows, rows[::-1], [rows[1], rows[0], rows[3], rows[2]]):
        assert recommend(order, objectives, {}).config == "c"
    # the second objective alone decides when it differs; a max tie-break picks the larger value
    assert recommend(rows[:2], {"clip_score": "max", "latency_ms_p95": "min"}, {}).config == "b"
    assert recommend(rows[:2][::-1], {"clip_score": "max", "latency_ms_p95": "max"}, {}).config == "a"


def test_nothing_satisfies_constraints_is_a_clear_message():
    rec = recommend(ROWS, {"clip_score": "max"}, {"peak_vram_mb": {"max": 1000}})
    assert rec.config is None
    assert rec.message.startswith("No config satisfies the constraints")
    assert "fast: peak_vram_mb 9000 > max 1000" in rec.message
    assert set(rec.ruled_out) == {"fast", "good", "best", "huge"}


def test_unmeasured_constraint_column_rules_out_and_ineligible_rows_are_skipped():
    rows = [dict(ROWS[0], peak_vram_mb=NAN), dict(ROWS[1], pareto_note="excluded: reference (fid measured against it)")]
    rec = recommend(rows, {"clip_score": "max"}, {"peak_vram_mb": {"max": 12000}}, eligible=[True, False])
    assert rec.config is None
    assert rec.ruled_out == {"fast": ["peak_vram_mb not measured"],
                             "good": ["excluded: reference (fid measured against it)"]}


def test_no_objectives_means_no_recommendation():
    assert recommend(ROWS, {}, {}).config is None


def test_latex_escapes_and_balances_columns():
    rows = [
        {"config": "a_b & 50% #1 {x}", "config_id": "1", "latency_ms_p50": 10.0, "latency_ms_p95": 12.0,
         "images_per_s": 100.0, "clip_score": 31.0, "clip_score_lo": 30.0, "clip_score_hi": 32.0, "fid": 5.0},
        {"config": "ref~^\\", "config_id": "2", "latency_ms_p50": 20.0, "latency_ms_p95": 25.0,
         "images_per_s": 50.0, "clip_score": 33.0, "clip_score_lo": NAN, "clip_score_hi": NAN, "fid": 4.0},
    ]
    tex = render_latex(rows, ["clip_score", "fid"], "caption_with_underscore", ["fid"])
    body = [l for l in tex.splitlines() if l.endswith(r"\\")]
    assert len({l.count("&") - l.count(r"\&") for l in body}) == 1  # same number of columns everywhere
    assert r"a\_b \& 50\% \#1 \{x\}" in tex and r"ref\textasciitilde{}\textasciicircum{}\textbackslash{}" in tex
    assert r"\textbf{10}" in tex  # best p50 (min)
    assert r"\textbf{33}" in tex and r"\textbf{4}" in tex  # best clip (max), best fid (min)
    assert r"31 $\pm$ 1" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\begin{tabular}") == 1
    assert "caption\\_with\\_underscore" in tex and "random weights" in tex
    # braces balanced outside escapes
    stripped = re.sub(r"\\[{}]", "", tex)
    assert stripped.count("{") == stripped.count("}")
    assert escape_latex("100%") == r"100\%"


def test_structured_knobs_read_in_a_few_words():
    """Report cells and plot categories: the JSON a results.csv holds, said briefly; unset is '–'."""
    from t2ibench.reports.labels import knob_text

    assert knob_text('{"backend": "torchao", "components": ["denoiser"], "type": "int8dq"}') == "torchao int8dq"
    assert knob_text({"backend": "quanto", "type": "int8", "components": ["denoiser", "text_encoder"]}) == \
        "quanto int8 denoiser+text_encoder"
    assert knob_text('[{"fuse": true, "scale": 0.8, "source": "random:a", "weight_name": null}]') == "random:a ×0.8 fused"
    assert knob_text({"method": "first_block", "threshold": 0.08}) == "first_block threshold=0.08"
    assert knob_text({"mode": None, "fullgraph": False, "regional": True}) == "regional=True"
    assert [knob_text(v) for v in (None, "", "[]", {}, "sdpa", 30, True)] == ["–", "–", "–", "–", "sdpa", "30", "True"]
