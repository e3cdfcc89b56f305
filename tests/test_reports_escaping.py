"""User strings in the reports are shown literally: HTML-escaped everywhere (text and attributes), and
drawn as plain text in plots (no mathtext). Checked by parsing what was written."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from html_page import ParsedPage

from t2ibench.reports.html import render_html
from t2ibench.reports.plots import make_plots
from t2ibench.reports.recommend import Recommendation
from t2ibench.suites.knobs import KNOB_NAMES, Knobs

PROMPTS = ['quotes " and \' & ampersands', '"><img src=x onerror=alert(1)>', "<script>alert(2)</script>",
           r"a $\frac$ b"]
NAMES = [r"a | b $\frac$ c", '"><b>x</b>', "it's <i>", r"x_1^2 $y$ \alpha"]


def _rows() -> list[dict]:
    rows = []
    for i, name in enumerate(NAMES):
        knobs = Knobs(steps=2 + i % 2, scheduler=["euler", "ddim"][i // 2], width=64, height=32).model_dump()
        rows.append({**{k: knobs.get(k) for k in KNOB_NAMES}, "config": name, "config_id": f"id{i}",
                     "n_ok": 2, "n_failed": 0, "n_nan": 0, "n_skipped": 0, "latency_ms_p50": 100.0 + 10 * i,
                     "latency_ms_p95": 120.0 + 10 * i, "latency_ms_mean": 105.0, "images_per_s": 9.5,
                     "peak_vram_mb": math.nan, "peak_rss_mb": 800.0 + i, "clip_score": 30.0 + i,
                     "clip_score_lo": 29.0 + i, "clip_score_hi": 31.0 + i, "pareto": i == 0,
                     "pareto_note": "", "reason": "", "is_reference": i == 3, "status": "done"})
    return rows


def _cells() -> list[dict]:
    return [{"config_id": f"id{i}", "prompt_id": f"p{j}", "seed": s, "prompt": p, "status": "ok",
             "image_path": f"images/id{i}/p{j}-{s}.png", "step_ms": [1.0, 2.0]}
            for i in range(len(NAMES)) for j, p in enumerate(PROMPTS) for s in (0, 1)]


@pytest.fixture(scope="module")
def parsed() -> ParsedPage:
    page = render_html(suite={"name": NAMES[1], "model": "random:tiny-sd"}, rows=_rows(), cells=_cells(),
                       metrics=["clip_score"], plots=[], environment={"note": PROMPTS[1]}, random_metrics=[],
                       recommendation=Recommendation("id0", NAMES[0], f"Recommended: {NAMES[0]}."))
    p = ParsedPage()
    p.feed(page)
    return p


def test_every_alt_attribute_holds_the_prompt_and_config_literally(parsed):
    imgs = [a for t, a in parsed.tags if t == "img"]
    expected = {(f"images/id{i}/p{j}-{s}.png", f"{p} ({n}, seed {s})")
                for i, n in enumerate(NAMES) for j, p in enumerate(PROMPTS) for s in (0, 1)}
    assert {(a["src"], a["alt"]) for a in imgs} == expected and len(imgs) == len(expected)
    assert all(set(a) <= {"class", "data-seed", "src", "alt", "width", "height", "loading"} for a in imgs)


def test_no_user_markup_becomes_a_tag_and_text_stays_literal(parsed):
    assert {t for t, _ in parsed.tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "code",
                                           "div", "input", "table", "thead", "tbody", "tr", "th", "td", "span",
                                           "label", "select", "option", "img", "script",
                                           "details", "summary", "ul", "li", "b"}  # the estimands' notes
    assert sum(t == "script" for t, _ in parsed.tags) == 1  # the page's own
    text = "".join(parsed.text)
    for s in PROMPTS + NAMES:
        assert s in text
    assert [a["title"] for t, a in parsed.tags if t == "td" and "title" in a] == NAMES


def _svg_texts(path) -> list[str]:
    return ["".join(e.itertext()) for e in ET.parse(path).iter() if e.tag.endswith("}text")]


def test_plots_draw_user_strings_literally(tmp_path):
    """Plots name configs by the knobs that differ: user text in a knob (here the negative prompt) is drawn as
    written, in the bar labels and the legend; points carry their ids."""
    rows = [dict(r, negative_prompt=n) for r, n in zip(_rows(), NAMES)]
    plots = {p.svg.stem: p for p in make_plots(rows, _cells(), ["clip_score"], {"clip_score"}, tmp_path)}
    assert {"clip_score_vs_latency", "memory", "step_profile"} <= set(plots)
    for stem in ("memory", "step_profile"):  # bar labels, legend
        texts = " | ".join(_svg_texts(plots[stem].svg))
        assert all(f"negative_prompt={n}" in texts for n in NAMES), texts
    assert {"C1", "C2", "C3", "C4"} <= set(_svg_texts(plots["clip_score_vs_latency"].svg))  # point ids
    assert all(p.png.stat().st_size > 0 for p in plots.values())


def test_knob_effects_one_figure_per_knob_with_axis_labels(tmp_path):
    plots = {p.svg.stem: p for p in make_plots(_rows(), _cells(), ["clip_score"], set(), tmp_path)}
    assert plots["effect_steps"].wide and plots["effect_scheduler"].wide and not plots["memory"].wide
    steps = _svg_texts(plots["effect_steps"].svg)
    assert steps.count("steps") == 2  # x label of both panels (latency, clip_score)
    assert "latency p50 (ms, lower is better)" in steps and "CLIP score (higher is better)" in steps
    assert {"scheduler=euler", "scheduler=ddim"} <= set(steps)  # one line per value of the other knob
    sched = _svg_texts(plots["effect_scheduler"].svg)
    assert sched.count("scheduler") == 2 and {"euler", "ddim"} <= set(sched)  # categories as ticks
