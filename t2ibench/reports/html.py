"""``report.html``: one self-contained page (plots inlined; the run's images by relative path).

Every user string (prompts, config names, errors) goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

from t2ibench.base import plural
from t2ibench.reports.plots import Plot
from t2ibench.reports.recommend import Recommendation
from t2ibench.reports.labels import config_labels, knob_text, label as column_label, short_ids, varying_knobs

LAZY_ABOVE = 400  # images; beyond this the grid loads lazily

STYLE = """
*,*::before,*::after{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 20px 40px;color:#1d2330}
h1{margin:20px 0 4px}h2{margin-top:32px;border-bottom:1px solid #dde;padding-bottom:4px}
.meta{color:#667}.banner{background:#fff4e5;border:1px solid #f0b35a;padding:10px 14px;border-radius:6px;margin:14px 0}
.banner.mlperf.pass{background:#e8f6ec;border-color:#5ab36e}.banner.mlperf ul{margin:6px 0 0 0}
.rec{background:#eef7ee;border:1px solid #7cbf7c;padding:12px 16px;border-radius:6px;font-size:15px;margin:14px 0;overflow-wrap:anywhere}
.rec.none{background:#fdeeee;border-color:#d88}
table{border-collapse:separate;border-spacing:0;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #e4e6ee;text-align:right;white-space:nowrap;background:#fff}
th{background:#f3f4f8;cursor:pointer;position:sticky;top:0;z-index:2}th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
td.t,th.t{text-align:left}tr.front td{background:#f4fbf4}.ci{display:block;color:#889;font-size:11px}.note{color:#a55;text-align:left}
#filter{margin:6px 0 10px;padding:5px 8px;width:320px;max-width:100%}
.scroll{overflow:auto;max-width:100%}.tablebox{max-height:80vh;border:1px solid #e4e6ee;border-radius:6px}
.pin{position:sticky;left:0;z-index:1;box-shadow:inset -1px 0 0 #c9ccd8}th.pin{z-index:3}
#results .pin:not(.last){box-shadow:none}
#results .pin{overflow:hidden;text-overflow:ellipsis;max-width:var(--w);min-width:var(--w);width:var(--w)}
#results th.pin{white-space:normal}.cid{font-weight:600}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.keybox{flex:1 1 420px;max-width:100%;border:1px solid #e4e6ee;border-radius:6px;padding:6px}
.keybox h3{margin:2px 0 6px;font-size:14px}table.key{font-size:12px;width:100%}
table.key th:nth-child(2){width:65%}table.key th{cursor:default;position:static}
table.key td{text-align:left;white-space:normal;overflow-wrap:break-word}table.key td:first-child{white-space:nowrap}
table.key td.muted{color:#778}
.hint{color:#667;font-size:12px;margin:4px 0}
@media (max-width:700px){#results .pin:not(.p0):not(.p1){position:static}#results .pin{--w:auto}}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.plots figure{margin:0;border:1px solid #e4e6ee;padding:6px;border-radius:6px;max-width:100%}
.plots figure{flex:0 1 656px}.plots figure.scatter{flex:0 1 840px}
.plots figure.wide{flex:1 1 100%}.plots img{display:block;max-width:100%;height:auto}
.grid td{vertical-align:top;text-align:center}.grid th{text-align:center;white-space:normal;min-width:176px;max-width:240px;overflow-wrap:anywhere}
.grid td.prompt,.grid th.prompt{text-align:left;min-width:200px;max-width:260px;white-space:normal;overflow-wrap:anywhere}
.grid img{width:160px;height:auto;display:block;margin:auto}.grid .missing{color:#a55;font-size:11px;width:160px;margin:auto}
table.ops th{cursor:default;position:static}table.ops td.shapes{font-size:11px;color:#556;white-space:normal}
table.diff tr.new td{background:#fdf3e6}table.diff tr.vanished td{background:#eef3fb}
details.profile,details.profile-diff{margin:6px 0}
.grid .ref,.grid th.ref{background:#f7f7fb}.seedbar{margin:6px 0 10px}.hidden{display:none!important}
"""

SCRIPT = """
(function(){
  const table=document.getElementById('results'); const body=table.tBodies[0];
  table.querySelectorAll('th').forEach((th,i)=>th.addEventListener('click',()=>{
    const asc=th.getAttribute('aria-sort')!=='ascending';
    table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort',asc?'ascending':'descending');
    const num=th.dataset.type==='num';
    const key=r=>{const c=r.cells[i];const v=c.dataset.value!==undefined?c.dataset.value:c.textContent;
      if(!num)return v.toLowerCase();const f=parseFloat(v);return isNaN(f)?null:f;};
    const rows=Array.from(body.rows);
    rows.sort((a,b)=>{const x=key(a),y=key(b);if(x===y)return 0;if(x===null)return 1;if(y===null)return -1;
      return (x<y?-1:1)*(asc?1:-1);});
    rows.forEach(r=>body.appendChild(r));
  }));
  document.getElementById('filter').addEventListener('input',e=>{const q=e.target.value.toLowerCase();
    Array.from(body.rows).forEach(r=>r.classList.toggle('hidden',!r.textContent.toLowerCase().includes(q)));});
  const seed=document.getElementById('seed');
  if(seed){const show=()=>document.querySelectorAll('.grid [data-seed]').forEach(el=>
      el.classList.toggle('hidden',el.dataset.seed!==seed.value));seed.addEventListener('change',show);show();}
  const box=table.parentElement, hint=document.getElementById('results-hint');
  const more=()=>hint.classList.toggle('hidden',box.scrollWidth<=box.clientWidth);
  window.addEventListener('resize',more);more();
})();
"""


def _num(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.0f}" if 1e4 <= abs(v) < 1e9 else f"{v:.4g}"  # 45549 ms, not 4.555e+04
    return escape(str(v))


def _data_value(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else escape(str(v), quote=True)


def has_caches(rows: list[dict]) -> bool:
    """Whether some config of the run measured a cache hit rate."""
    return any(isinstance(r.get("cache_hit_rate"), float) and not math.isnan(r["cache_hit_rate"]) for r in rows)


def applied_summary(applied) -> str:
    """One short line of what the engine observed of a config's knobs (results.csv has the full JSON)."""
    import json

    data = json.loads(applied) if isinstance(applied, str) and applied else applied or {}
    parts = []
    if cache := data.get("cache"):
        parts.append(f"cache {cache.get('method')}: {cache.get('units')} {cache.get('unit')}")
    for lora in data.get("lora") or []:
        parts.append(f"lora {lora.get('source')} ×{lora.get('scale')}" + (" fused" if lora.get("fused") else "")
                     + ("" if lora.get("active") else " (inactive)"))
    quantize = dict(data.get("quantize") or {})
    if config := quantize.pop("config", None):
        parts.append(f"quantize {config}")
    for component, kinds in sorted(quantize.items()):
        quantized = {k: n for k, n in kinds.items() if k not in ("float32", "float16", "bfloat16")}
        parts.append(f"{component}: " + ", ".join(f"{n} {k}" for k, n in sorted(quantized.items())))
    if attention := data.get("attention"):
        parts.append(f"attention {attention.get('backend')}")
    if regions := data.get("compiled_regions"):
        parts.append("compiled " + ", ".join(f"{k}×{v}" for k, v in sorted(regions.items())))
    if profile := data.get("profile"):  # the trace's path, or why there is none
        parts.append("profiled" if str(profile).startswith("profiles/") else f"profile {profile}")
    return "; ".join(parts)


ID_W, NAME_W, WIDE_NAME_W, FIGURE_W = 64, 220, 340, 96  # px: the pinned columns' widths (sticky offsets add up)


def decisive_columns(rows: list[dict], metrics: list[str], objectives: dict | None) -> list[str]:
    """The figures that decide, pinned beside the config name: p50 and the objectives (the metrics when no
    objective is set)."""
    chosen = [o for o in (objectives or {}) if any(o in r for r in rows)] or list(metrics)
    return list(dict.fromkeys(["latency_ms_p50", *chosen]))


def _pin_css(n: int) -> str:
    """Sticky offsets of the ``n`` pinned columns (id, config, then the decisive figures); a wide page gives the
    config name more room."""
    def rules(name_w: int) -> str:
        widths = [ID_W, name_w] + [FIGURE_W] * (n - 2)
        return "".join(f"#results .p{i}{{--w:{w}px;left:{sum(widths[:i])}px}}" for i, w in enumerate(widths))
    return f"{rules(NAME_W)}@media (min-width:1200px){{{rules(WIDE_NAME_W)}}}"


def _results_table(rows: list[dict], metrics: list[str], objectives: dict | None = None) -> str:
    """The results, one row per config. Its id, name, p50 and the objectives stay pinned on the left (at 900 px
    they are what shows); the knobs and the other figures scroll sideways in the table's box."""
    varying = varying_knobs(rows)
    figures = [("n_ok", "ok"), ("n_failed", "failed"), ("n_nan", "NaN"), ("n_skipped", "skipped"),
               ("latency_ms_p50", "p50 ms"), ("latency_ms_p95", "p95 ms"), ("latency_ms_mean", "mean ms"),
               ("images_per_s", "img/s"), ("peak_vram_mb", "VRAM MB"), ("peak_rss_mb", "RSS MB")]
    if has_caches(rows):
        figures.append(("cache_hit_rate", "cache hit"))
    names = dict(figures)
    decisive = decisive_columns(rows, metrics, objectives)
    pinned = len(decisive) + 2

    def pin(i: int) -> str:
        return f" pin p{i}" + (" last" if i == pinned - 1 else "")

    def head_cell(column: str, cls: str) -> str:
        if column in metrics:
            return f'<th class="{cls}" data-type="num" title="{escape(column)}">{escape(column_label(column))}</th>'
        return f'<th class="{cls}" data-type="num" title="{escape(column)}">{escape(names.get(column, column))}</th>'

    def cell(r: dict, column: str, cls: str) -> str:
        ci = ""
        if column in metrics:
            lo, hi = r.get(f"{column}_lo"), r.get(f"{column}_hi")
            ci = "" if lo is None or math.isnan(lo) else f' <span class="ci">[{_num(lo)}, {_num(hi)}]</span>'
        return f'<td class="{cls}" data-value="{_data_value(r.get(column))}">{_num(r.get(column))}{ci}</td>'.replace(
            'class="" ', "")

    show_applied = any(r.get("applied") for r in rows)
    rest_figures = [c for c, _ in figures if c not in decisive]
    rest_metrics = [m for m in metrics if m not in decisive]
    head = [f'<th class="t{pin(0)}" data-type="text" title="the id plots use">id</th>',
            f'<th class="t{pin(1)}" data-type="text">config</th>']
    head += [head_cell(c, pin(i + 2).strip()) for i, c in enumerate(decisive)]
    head += [f'<th class="t" data-type="text">{escape(k)}</th>' for k in varying]
    head += [head_cell(c, "") for c in rest_figures + rest_metrics]
    if show_applied:
        head.append('<th class="t" data-type="text" title="what the engine observed of the knobs">applied</th>')
    head += ['<th data-type="text">pareto</th>', '<th class="t" data-type="text">note</th>',
             '<th class="t" data-type="text">config_id</th>']  # last: a hash is looked up, not read
    head = [h.replace(' class=""', "") for h in head]
    body = []
    colours = _colours(rows)
    for r, cid, colour in zip(rows, short_ids(rows), colours):
        name = escape(str(r["config"]), quote=True)
        tds = [f'<td class="t{pin(0)}" data-value="{cid[1:].zfill(4)}"><span class="sw" style="background:{colour}">'
               f'</span><span class="cid">{cid}</span></td>',
               f'<td class="t{pin(1)}" title="{name}">{name}</td>']
        tds += [cell(r, c, pin(i + 2).strip()) for i, c in enumerate(decisive)]
        tds += [f'<td class="t">{escape(knob_text(r.get(k)))}</td>' for k in varying]
        tds += [cell(r, c, "") for c in rest_figures + rest_metrics]
        if show_applied:
            tds.append(f'<td class="t">{escape(applied_summary(r.get("applied")))}</td>')
        note = r.get("pareto_note") or (r.get("reason") or "")
        tds += [f'<td>{"✓" if r["pareto"] else ""}</td>', f'<td class="note">{escape(note)}</td>',
                f'<td class="t"><code>{escape(r["config_id"])}</code></td>']
        body.append(f'<tr class="{"front" if r["pareto"] else ""}">{"".join(tds)}</tr>')
    return ('<input id="filter" placeholder="filter configs…" aria-label="filter configs">'
            '<p class="hint hidden" id="results-hint">More columns to the right: scroll the table sideways '
            '(the config and the figures that decide stay put).</p><div class="scroll tablebox">'
            f'<table id="results"><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _colours(rows: list[dict]) -> list[str]:
    from t2ibench.reports.plots import config_colours

    return config_colours(len(rows))


def _key(rows: list[dict]) -> str:
    """The config key beside the plots: each id with its colour, the knobs that set it apart, and its name
    where that is more than knob=value pairs (``reference``, a named include)."""
    labels = config_labels(rows)
    named = [str(r["config"]) if not all("=" in w for w in str(r["config"]).split()) else "" for r in rows]
    trs = []
    for cid, colour, text, name in zip(short_ids(rows), _colours(rows), labels, named):
        name_td = f'<td class="t muted">{escape(name)}</td>' if any(named) else ""
        trs.append(f'<tr><td class="t"><span class="sw" style="background:{colour}"></span>'
                   f'<span class="cid">{cid}</span></td><td class="t">{escape(text)}</td>{name_td}</tr>')
    name_th = '<th class="t">config name</th>' if any(named) else ""
    return ('<div class="keybox" id="config-key"><h3>Config key</h3><table class="key"><thead><tr><th class="t">id</th>'
            f'<th class="t">knobs that differ</th>{name_th}</tr></thead><tbody>{"".join(trs)}</tbody></table></div>')


def _plots(plots: list[Plot], rows: list[dict]) -> str:
    figs = []
    for i, p in enumerate(plots):
        data = base64.b64encode(p.png.read_bytes()).decode()
        wide = ' class="wide"' if p.wide else ' class="scatter"' if p.svg.stem.endswith("_vs_latency") else ""
        figs.append(f'<figure{wide}><img alt="{escape(p.title, quote=True)}" src="data:image/png;base64,{data}">'
                    f'<figcaption>{escape(p.title)} · <a href="plots/{escape(p.svg.name)}">SVG</a></figcaption></figure>')
        if i == 0:  # the key beside the first plot (a row of its own on a narrow page)
            figs.append(_key(rows))
    return f'<div class="plots">{"".join(figs)}</div>' if figs else "<p>No plots (nothing measured).</p>"


SERVING_TABLE = [("offered_rate", "offered req/s"), ("achieved_rate", "achieved img/s"), ("latency_ms_p50", "p50 ms"),
                 ("latency_ms_p90", "p90 ms"), ("latency_ms_p99", "p99 ms"), ("latency_ms_max", "max ms"),
                 ("queue_ms_mean", "queue ms"), ("compute_ms_mean", "compute ms"), ("slo_ms", "SLO ms"),
                 ("slo_attainment", "in SLO"), ("goodput", "goodput/s"), ("error_rate", "errors"),
                 ("rejected", "503s"), ("mean_batch", "batch"), ("capped", "capped"),
                 ("slo_max_rate", "max rate in SLO")]


def _serving(rows: list[dict], plots: list[Plot]) -> str:
    """The Serving section (only for a run with load levels): the highest rate within the SLO per family, a
    table of each level's figures (p50 and p99 with their 95% CIs), and the serving plots."""
    from t2ibench.reports.serving import has_levels, is_serving, slo_lines

    if not has_levels(rows):
        return ""
    served = [(r, cid) for r, cid in zip(rows, short_ids(rows)) if is_serving(r)]
    lines = "".join(f"<li>{escape(line)}</li>" for line in slo_lines(rows))
    head = "".join(f'<th data-type="num" title="{escape(c)}">{escape(t)}</th>' for c, t in SERVING_TABLE)
    body = []
    for r, cid in served:
        tds = []
        for column, _ in SERVING_TABLE:
            ci = ""
            lo, hi = r.get(f"{column}_ci_low"), r.get(f"{column}_ci_high")
            if isinstance(lo, float) and not math.isnan(lo):
                ci = f' <span class="ci">[{_num(lo)}, {_num(hi)}]</span>'
            tds.append(f'<td data-value="{_data_value(r.get(column))}">{_num(r.get(column))}{ci}</td>')
        errors = r.get("errors_by_kind") or ""
        body.append(f'<tr><td class="t"><span class="cid">{cid}</span></td><td class="t">{escape(str(r["config"]))}'
                    f'</td><td class="t">{escape(str(r.get("scenario") or ""))}</td>{"".join(tds)}'
                    f'<td class="t">{escape(errors if errors != "{}" else "")}</td></tr>')
    table = ('<div class="scroll tablebox"><table class="serving"><thead><tr><th class="t">id</th>'
             f'<th class="t">config</th><th class="t">scenario</th>{head}<th class="t">errors by kind</th></tr>'
             f'</thead><tbody>{"".join(body)}</tbody></table></div>')
    figs = "".join(f'<figure class="scatter"><img alt="{escape(p.title, quote=True)}" src="data:image/png;base64,'
                   f'{base64.b64encode(p.png.read_bytes()).decode()}"><figcaption>{escape(p.title)} · '
                   f'<a href="plots/{escape(p.svg.name)}">SVG</a></figcaption></figure>' for p in plots)
    return (f'<h2 id="serving">Serving</h2>{"<ul>" + lines + "</ul>" if lines else ""}'
            '<p class="hint">Latency runs from each request\'s scheduled send (no coordinated omission); '
            "percentiles are over the requests answered ok, SLO attainment over every scheduled request (an "
            f"error is a miss).</p>{table}" + (f'<div class="plots">{figs}</div>' if figs else ""))


def _size_attrs(row: dict) -> str:
    """The image's pixel size as width/height attributes: the browser reserves the true aspect ratio
    before the (lazy) image loads; CSS scales the width and keeps that ratio."""
    w, h = row.get("width"), row.get("height")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h))
    return f' width="{w}" height="{h}"' if ok else ""


def _grid(rows: list[dict], cells: list[dict], seeds: list[int], prompt_order: list[str] = ()) -> str:
    """Prompts (in the suite's order) × configs, one seed at a time (the selector switches it); the
    reference beside the prompt."""
    order = sorted(rows, key=lambda r: not r["is_reference"])
    index = {(c["config_id"], c["prompt_id"], c["seed"]): c for c in cells}
    rank = {pid: i for i, pid in enumerate(prompt_order)}
    prompts = sorted(dict.fromkeys((c["prompt_id"], c["prompt"]) for c in cells), key=lambda p: rank.get(p[0], len(rank)))
    lazy = ' loading="lazy"' if len(cells) > LAZY_ABOVE else ""
    head = "".join(f'<th class="{"ref" if r["is_reference"] else ""}">{escape(str(r["config"]))}</th>' for r in order)
    body = []
    for pid, text in prompts:
        tds = [f'<td class="prompt pin">{escape(text)}</td>']
        for r in order:
            items = []
            for i, s in enumerate(seeds):
                hidden = "" if i == 0 else " hidden"  # seed 0 shows even before the script runs
                c = index.get((r["config_id"], pid, s))
                if c and c["status"] == "ok" and c["image_path"]:
                    items.append(f'<img class="{hidden.strip()}" data-seed="{s}" src="{escape(c["image_path"], quote=True)}"'
                                 f'{_size_attrs(r)}{lazy} alt="{escape(text, quote=True)} '
                                 f'({escape(str(r["config"]), quote=True)}, seed {s})">')
                else:
                    why = (c["status"] if c else "not run")
                    items.append(f'<div class="missing{hidden}" data-seed="{s}">{escape(why)}</div>')
            tds.append(f'<td class="{"ref" if r["is_reference"] else ""}">{"".join(items)}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    options = "".join(f'<option value="{s}">{s}</option>' for s in seeds)
    return (f'<div class="seedbar"><label>seed <select id="seed">{options}</select></label> '
            f'<span class="hint">one seed at a time; {len(seeds)} seed{"s" if len(seeds) != 1 else ""} in this run</span></div>'
            f'<div class="scroll"><table class="grid"><thead><tr><th class="prompt pin">prompt</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _estimands(metrics: list[str]) -> str:
    """The column notes: what each metric's value and 95% CI estimate (the registry's ``estimand``)."""
    from t2ibench.metrics.registry import column

    items = [(m, column(m)) for m in metrics]
    lis = "".join(f"<li><b>{escape(c.label)}</b>: {escape(c.estimand)}</li>" for _, c in items if c and c.estimand)
    if not lis:
        return ""
    return ('<details class="estimands" open><summary>What each metric and its 95% CI (over prompts) '
            f"estimate</summary><ul>{lis}</ul></details>")


def render_html(*, suite: dict, rows: list[dict], cells: list[dict], metrics: list[str], plots: list[Plot],
                recommendation: Recommendation, environment: dict, random_metrics: list[str],
                shared_gpus: bool = False, objectives: dict | None = None,
                profiles: dict[str, list[dict]] | None = None) -> str:
    from t2ibench.reports.profile import render_profiles_html

    name = escape(str(suite.get("name", "?")))
    banners = []
    if shared_gpus:
        banners.append('<div class="banner" id="shared-gpus"><b>Shared GPUs:</b> this run put two Ray actors on '
                       "each GPU (<code>share_gpus=true</code>), so its latencies are <b>not comparable</b> with "
                       "a run that has a GPU to itself.</div>")
    if random_metrics:
        banners.append(f'<div class="banner"><b>Random weights:</b> {escape(", ".join(random_metrics))} were computed '
                       "with randomly initialised networks; their values are <b>not meaningful</b>.</div>")
    if str(suite.get("model", "")).startswith("random:"):
        banners.append(f'<div class="banner">Model <code>{escape(str(suite["model"]))}</code> has random weights: '
                       "latency and memory are real, the images are noise.</div>")
    cached_random = [r for r in rows if isinstance(r.get("cache_hit_rate"), float) and not math.isnan(r["cache_hit_rate"])
                     and str(r.get("model") or suite.get("model", "")).startswith("random:")]
    if cached_random:
        banners.append('<div class="banner"><b>Cache hit rates</b> measured with random weights are not those '
                       "of a trained model: a step cache skips what the model's residuals allow.</div>")
    from t2ibench.reports.summary import stability_note

    if unstable := stability_note(rows):
        banners.append(f'<div class="banner" id="unstable">{escape(unstable[0].upper() + unstable[1:])}</div>')
    from t2ibench.reports.mlperf import verdicts

    for verdict in verdicts(suite, rows):
        head, *rest = verdict.lines()
        items = "".join(f"<li>{escape(line.strip())}</li>" for line in rest)
        banners.append(f'<div class="banner mlperf {"pass" if verdict.passed else "fail"}"><b>{escape(head)}</b>'
                       f"<ul>{items}</ul></div>")
    rec_class = "rec" if recommendation.config_id else "rec none"
    env_rows = "".join(f'<tr><td class="t">{escape(str(k))}</td><td class="t">{escape(str(v))}</td></tr>'
                       for k, v in environment.items() if v is not None)
    seeds = sorted({c["seed"] for c in cells})
    objectives = suite.get("objectives") if objectives is None else objectives
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>t2ibench: {name}</title><style>{STYLE}{_pin_css(len(decisive_columns(rows, metrics, objectives)) + 2)}</style>
</head><body>
<h1>t2ibench report: {name}</h1>
<p class="meta">model <code>{escape(str(suite.get("model", "?")))}</code> · {plural(len(rows), "config")} ·
{plural(len({c["prompt_id"] for c in cells}), "prompt")} × {plural(len(seeds), "seed")}</p>
{"".join(banners)}
<div class="{rec_class}" id="recommendation">{escape(recommendation.message)}</div>
<h2>Results</h2>{_results_table(rows, metrics, objectives)}{_estimands(metrics)}
<h2>Plots</h2>{_plots([p for p in plots if p.section != "serving"], rows)}
{_serving(rows, [p for p in plots if p.section == "serving"])}
<h2>Images</h2>{_grid(rows, cells, seeds, [p.get("prompt_id") for p in suite.get("prompts") or []])}
{render_profiles_html(rows, profiles or {})}
<h2>Environment</h2><table class="env">{env_rows}</table>
<script>{SCRIPT}</script></body></html>
"""


def write_html(path: Path, **kwargs) -> Path:
    path.write_text(render_html(**kwargs), encoding="utf-8")
    return path
