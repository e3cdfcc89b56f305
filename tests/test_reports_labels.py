"""How plots and the HTML table name configs, checked on what was drawn and written: a unique label per config
that names the knobs setting it apart (no truncated prefix, no ``=default``), effect panels whose lines vary one
knob with every other knob fixed, a distinct colour per config for 30 configs, and the figures that decide
pinned outside the scrolling part of the results table."""

from __future__ import annotations

import itertools
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest
from html_page import ParsedPage

from t2ibench.reports.html import render_html
from t2ibench.reports.labels import config_labels, distinguishing_knobs, knob_key, short_ids
from t2ibench.reports.plots import config_colours, make_plots
from t2ibench.reports.recommend import Recommendation
from t2ibench.suites.knobs import KNOB_NAMES, Knobs

INT8WO = {"backend": "torchao", "components": ["denoiser"], "type": "int8wo"}
INT8DQ = {"backend": "torchao", "components": ["denoiser"], "type": "int8dq"}


def _row(i: int, name: str, **knobs) -> dict:
    """A results row as tables.result_records makes it (structured knobs as JSON text)."""
    values = Knobs(width=32, height=32, **knobs).model_dump(mode="json")
    row = {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in values.items()}
    return {**row, "config": name, "config_id": f"{i:012x}", "n_ok": 2, "n_failed": 0, "n_nan": 0, "n_skipped": 0,
            "latency_ms_p50": 100.0 + 7 * i, "latency_ms_p95": 130.0 + 7 * i, "latency_ms_mean": 110.0 + 7 * i,
            "images_per_s": 1000 / (100.0 + 7 * i), "peak_vram_mb": math.nan, "peak_rss_mb": 900.0 + i,
            "clip_score": 30.0 + (i % 5) * 0.3, "clip_score_lo": 29.0, "clip_score_hi": 31.5, "pareto": i == 0,
            "pareto_note": "", "reason": "", "is_reference": name == "reference", "status": "done"}


def twelve() -> list[dict]:
    """steps × scheduler × guidance_scale, two quantize variants and channels_last of one matrix config (named
    as the suite expander names them), and a reference that also turns vae_tiling on."""
    rows = []
    for steps, scheduler, gs in itertools.product([1, 2], ["euler", "ddim"], [3.0, 7.5]):
        rows.append(_row(len(rows), f"steps={steps} scheduler={scheduler} guidance_scale={gs}", steps=steps,
                         scheduler=scheduler, guidance_scale=gs))
    base = dict(steps=2, scheduler="ddim", guidance_scale=7.5)
    rows.append(_row(8, "steps=2 scheduler=ddim guidance_scale=7.5 quantize=int8wo", quantize=INT8WO, **base))
    rows.append(_row(9, "steps=2 scheduler=ddim guidance_scale=7.5 quantize=int8dq", quantize=INT8DQ, **base))
    rows.append(_row(10, "steps=2 scheduler=ddim guidance_scale=7.5 channels_last=true", channels_last=True, **base))
    rows.append(_row(11, "reference", steps=3, vae_tiling=True))
    return rows


def thirty() -> list[dict]:
    return [_row(i, f"steps={s} scheduler={sch} guidance_scale={g}", steps=s, scheduler=sch, guidance_scale=g)
            for i, (s, sch, g) in enumerate(itertools.product([1, 2, 3], ["euler", "ddim", "heun"],
                                                               [2.0, 5.0, 7.5]))] + \
           [_row(27 + i, f"q{i}", steps=2, scheduler="ddim", guidance_scale=7.5, quantize=q)
            for i, q in enumerate([INT8WO, INT8DQ, {**INT8WO, "components": ["denoiser", "text_encoder"]}])]


def _cells(rows: list[dict]) -> list[dict]:
    return [{"config_id": r["config_id"], "prompt_id": "p0", "seed": 0, "prompt": "a cube", "status": "ok",
             "image_path": f"images/{r['config_id']}/p0-0.png", "step_ms": [5.0 + i] * r["steps"]}
            for i, r in enumerate(rows)]


def _differing(a: dict, b: dict) -> set[str]:
    return {k for k in KNOB_NAMES if knob_key(a.get(k)) != knob_key(b.get(k))}


def _svg_texts(path) -> list[str]:
    return ["".join(e.itertext()) for e in ET.parse(path).iter() if e.tag.endswith("}text")]


@pytest.fixture(scope="module")
def plots12(tmp_path_factory):
    rows = twelve()
    out = tmp_path_factory.mktemp("plots12")
    return rows, {p.svg.stem: p for p in make_plots(rows, _cells(rows), ["clip_score"], {"clip_score"}, out)}


def test_labels_are_unique_and_name_the_knob_two_configs_differ_in():
    rows = twelve()
    labels, ids = config_labels(rows), short_ids(rows)
    assert len(set(labels)) == len(set(ids)) == len(rows) == 12
    pairs = [(a, b, _differing(rows[a], rows[b])) for a, b in itertools.combinations(range(len(rows)), 2)]
    alone = [(a, b, d.pop()) for a, b, d in pairs if len(d) == 1]
    assert len(alone) >= 12  # the matrix neighbours, the quantize variants and channels_last
    for a, b, knob in alone:
        assert labels[a] != labels[b]
        assert knob in labels[a] or knob in labels[b], (labels[a], labels[b], knob)
    assert "quantize=torchao int8wo" in labels[8] and "quantize=torchao int8dq" in labels[9]
    assert distinguishing_knobs(rows)[0] == {"steps": "steps=1", "guidance_scale": "guidance_scale=3.0",
                                             "scheduler": "scheduler=euler"}  # unset quantize: left out


def test_plots_draw_one_unique_label_per_config(plots12):
    rows, plots = plots12
    labels = config_labels(rows)
    ticks = [t for t in _svg_texts(plots["memory"].svg) if re.match(r"C\d+ ", t)]
    assert ticks == [f"C{i + 1}  {label}" for i, label in enumerate(labels)]  # every bar, whole, in order
    assert len(set(ticks)) == 12
    legend = [t for t in _svg_texts(plots["step_profile"].svg) if re.match(r"C\d+ ", t)]
    assert sorted(legend) == sorted(ticks)
    points = [t for t in _svg_texts(plots["clip_score_vs_latency"].svg) if re.fullmatch(r"C\d+(, C\d+)*", t)]
    drawn = [i for t in points for i in t.split(", ")]
    assert sorted(drawn) == sorted(short_ids(rows))  # each point's id, once


def test_no_label_says_default(plots12):
    _, plots = plots12
    texts = [t for p in plots.values() for t in _svg_texts(p.svg)]
    assert not [t for t in texts if "default" in t], [t for t in texts if "default" in t]
    assert "none" in _svg_texts(plots["effect_quantize"].svg)  # the unset quantize, as a category


def test_effect_lines_vary_only_their_knob(plots12):
    rows, plots = plots12
    by_id = {r["config_id"]: r for r in rows}
    effects = {stem[len("effect_"):]: p for stem, p in plots.items() if stem.startswith("effect_")}
    assert set(effects) == {"steps", "scheduler", "guidance_scale", "quantize", "channels_last"}  # not vae_tiling
    for knob, plot in effects.items():
        assert plot.series
        for text, ids, _ in plot.series:
            members = [by_id[i] for i in ids]
            assert len(members) >= 2
            assert len({knob_key(m.get(knob)) for m in members}) == len(members)  # one point per x: no zigzag
            for a, b in itertools.combinations(members, 2):
                assert _differing(a, b) == {knob}, (knob, text, a["config"], b["config"])
    # every config pair that differs only in steps sits on one line of the steps panel
    lines = [set(ids) for _, ids, _ in effects["steps"].series]
    for a, b in itertools.combinations(rows, 2):
        if _differing(a, b) == {"steps"}:
            assert any({a["config_id"], b["config_id"]} <= line for line in lines)


def test_thirty_configs_thirty_colours(tmp_path):
    rows = thirty()
    assert len(set(config_colours(30))) == 30
    plots = {p.svg.stem: p for p in make_plots(rows, _cells(rows), ["clip_score"], set(), tmp_path)}
    for stem in ("step_profile", "memory", "clip_score_vs_latency"):
        colours = [c for _, _, c in plots[stem].series]
        assert len(colours) == 30 and len(set(colours)) == 30, stem
    svg = plots["memory"].svg.read_text()
    assert len(set(re.findall(r"fill: ?(#[0-9a-f]{6})", svg)) - {"#ffffff"}) >= 30  # the bars as drawn


def test_the_figures_that_decide_stay_outside_the_scrolling_columns():
    rows = twelve()
    page = render_html(suite={"name": "s", "model": "random:tiny-sd"}, rows=rows, cells=_cells(rows),
                       metrics=["clip_score"], plots=[], environment={}, random_metrics=[],
                       recommendation=Recommendation(None, None, "none"),
                       objectives={"clip_score": "max", "images_per_s": "max"})
    parsed = ParsedPage()
    parsed.feed(page)
    ths = [a for t, a in parsed.tags if t == "th" and "data-type" in a]
    pinned = [i for i, a in enumerate(ths) if "pin" in a.get("class", "").split()]
    assert pinned == list(range(5))  # id, config, p50, then the objectives in order; nothing pinned after
    titles = [a.get("title") for a in ths[:5]]
    assert titles[2:] == ["latency_ms_p50", "clip_score", "images_per_s"]
    assert sum(a.get("title") == "images_per_s" for a in ths) == 1  # moved, not repeated
    rules = [(int(i), int(w), int(left)) for i, w, left in
             re.findall(r"#results \.p(\d)\{--w:(\d+)px;left:(\d+)px\}", page)]
    assert rules and len(rules) % 5 == 0  # a set of five per page width
    for k in range(0, len(rules), 5):  # each column starts where the pinned ones before it end
        five = rules[k:k + 5]
        assert [i for i, _, _ in five] == list(range(5))
        assert [left for _, _, left in five] == [sum(w for _, w, _ in five[:i]) for i in range(5)]
    tds = [a["class"] for t, a in parsed.tags if t == "td" and re.search(r"\bp\d\b", a.get("class", ""))]
    assert tds == [c for _ in rows for c in ("t pin p0", "t pin p1", "pin p2", "pin p3", "pin p4 last")]
