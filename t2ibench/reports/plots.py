"""Report plots (matplotlib, PNG and SVG): quality vs latency with the frontier, per-knob effects,
peak memory per config, and the per-step time profile; for load levels (the Serving section), latency p50
and p99 against achieved throughput with the SLO, SLO attainment against offered rate, and quality against
goodput with its frontier.

Every plot names configs the same way: a short id (C1, C2…, keyed to a table in the report) and the knobs
that differ between the configs (``labels.distinguishing_knobs``); each config keeps one colour and marker
across the plots, and no two configs share both. Legends sit outside the axes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from t2ibench.reports.labels import (config_labels, effect_groups, higher_is_better, knob_key, knob_text, label,
                                     short_ids, varying_knobs)
from t2ibench.reports.pareto import pareto_front


# user strings (config names, knob values) are never parsed as TeX; SVG keeps text as text
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False, "svg.fonttype": "none"}
MARKERS = "osD^vPX*p<>h"  # the next marker every 10 colours: similar shades never share a marker
ID_FONT = 7.5


@dataclass(frozen=True)
class Plot:
    title: str
    png: Path
    svg: Path
    wide: bool = False  # shown on a row of its own, at its natural size
    series: tuple[tuple[str, tuple[str, ...], str], ...] = ()  # what was drawn: (label, config_ids, colour) each
    section: str = ""  # "serving": shown in the report's Serving section


@dataclass(frozen=True)
class Names:
    """How the plots name and draw each config, by config_id."""
    ids: dict[str, str]
    labels: dict[str, str]
    colours: dict[str, str]
    markers: dict[str, str]

    @classmethod
    def of(cls, rows: list[dict]) -> "Names":
        keys = [r["config_id"] for r in rows]
        colours = config_colours(len(rows))
        return cls(dict(zip(keys, short_ids(rows))), dict(zip(keys, config_labels(rows))), dict(zip(keys, colours)),
                   {k: marker(i) for i, k in enumerate(keys)})

    def legend(self, config_id: str) -> str:
        return f"{self.ids[config_id]}  {self.labels[config_id]}"


def config_colours(n: int) -> list[str]:
    """``n`` distinct colours (hex): tab10, then tab20's lighter shades, then tab20b and tab20c one hue
    family at a time; beyond those 60, evenly spaced hues."""
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb, to_hex

    out = [to_hex(c) for c in colormaps["tab10"].colors] + [to_hex(c) for c in colormaps["tab20"].colors[1::2]]
    for name in ("tab20b", "tab20c"):
        shades = colormaps[name].colors
        out += [to_hex(shades[family * 4 + shade]) for shade in range(4) for family in range(5)]
    out = list(dict.fromkeys(out))
    extra = max(0, n - len(out))
    for i in range(extra * 2):
        if len(out) >= n:
            break
        c = to_hex(hsv_to_rgb((i / (extra * 2), 0.75 if i % 2 else 0.5, 0.85 if i % 2 else 0.6)))
        if c not in out:
            out.append(c)
    return out[:n]


def marker(i: int) -> str:
    return MARKERS[(i // 10) % len(MARKERS)]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _save(fig, out_dir: Path, stem: str, title: str, wide: bool = False, series=(), section: str = "") -> Plot:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Plot(title, png, svg, wide, tuple(series), section)


def _legend_below(fig, handles, labels, fontsize: float = 7.5) -> None:
    """The legend under the figure's axes (after their layout), never over the data; one column for long labels."""
    longest = max((len(t) for t in labels), default=0)
    ncol = 1 if longest > 60 or len(labels) < 4 else (2 if longest > 28 else 3)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=fontsize,
               frameon=False, handlelength=1.6, columnspacing=1.4)


def _quality_vs_latency(rows: list[dict], metric: str, out_dir: Path, random_weights: bool,
                        names: Names) -> Plot | None:
    import matplotlib.pyplot as plt

    pts = [r for r in rows if _finite(r.get(metric)) and _finite(r.get("latency_ms_p50"))]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7.4, 5.0) if len(pts) > 12 else (6.4, 4.4))
    x = [r["latency_ms_p50"] for r in pts]
    y = [r[metric] for r in pts]
    for xi, r in zip(x, pts):  # the CI as given (it contains the point)
        if _finite(r.get(f"{metric}_lo")) and _finite(r.get(f"{metric}_hi")):
            ax.vlines(xi, r[f"{metric}_lo"], r[f"{metric}_hi"], color="0.75", lw=1, zorder=1)
    series = []
    for xi, yi, r in zip(x, y, pts):
        cid = r["config_id"]
        line, = ax.plot([xi], [yi], linestyle="none", marker=names.markers[cid], color=names.colours[cid],
                        markersize=6, markeredgecolor="white", markeredgewidth=0.5, zorder=3)
        series.append((names.ids[cid], (cid,), line.get_color()))
    direction = "max" if higher_is_better(metric) else "min"
    front = [p for p, on in zip(pts, pareto_front([[a, b] for a, b in zip(x, y)], ["min", direction])) if on]
    front.sort(key=lambda r: r["latency_ms_p50"])
    if len(front) > 1:
        ax.step([r["latency_ms_p50"] for r in front], [r[metric] for r in front], where="post",
                color="tab:red", lw=1, alpha=0.7, zorder=2, label="Pareto frontier")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, borderaxespad=0.2)
    ax.margins(0.1)
    _fit_points(ax, y, [r.get(f"{metric}_lo") for r in pts] + [r.get(f"{metric}_hi") for r in pts])
    ax.set_xlabel("latency p50 (ms, lower is better)")
    ax.set_ylabel(f"{label(metric)} ({'higher' if direction == 'max' else 'lower'} is better)")
    title = f"{label(metric)} vs latency" + (" — random weights, not meaningful" if random_weights else "")
    ax.set_title(title, fontsize=10, loc="left", pad=18 if len(front) > 1 else 6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _place_ids(ax, x, y, [names.ids[r["config_id"]] for r in pts], [names.colours[r["config_id"]] for r in pts])
    return _save(fig, out_dir, f"{metric}_vs_latency", title, series=series)


def _fit_points(ax, ys: list[float], bounds: list) -> None:
    """The y range shows the whole CIs unless they would squeeze the points into a sliver (random-weight metrics
    on a few images): then it fits the points, and the CIs run off the frame."""
    ends = [b for b in bounds if _finite(b)]
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or abs(hi) * 0.1 or 1.0
    if ends and max(ends) - min(ends) > 4 * span:
        ax.set_ylim(lo - 0.15 * span, hi + 0.15 * span)


def _place_ids(ax, xs: list[float], ys: list[float], texts: list[str], colours: list[str]) -> None:
    """Each point's id beside it where it overlaps no other id, marker or the frame (a leader line when it had to
    move away); points drawn on top of each other share one label (``C3, C7``)."""
    import numpy as np

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    px = ax.transData.transform(np.column_stack([xs, ys]))
    frame = ax.get_window_extent(renderer)
    clusters: list[list[int]] = []
    for i, p in enumerate(px):
        home = next((c for c in clusters if np.hypot(*(px[c[0]] - p)) < 4), None)
        home.append(i) if home is not None else clusters.append([i])
    taken = [(x - 4, y - 4, x + 4, y + 4) for x, y in px]
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    for members in clusters:
        ids = [texts[i] for i in members]
        text = "\n".join(", ".join(ids[j:j + 4]) for j in range(0, len(ids), 4))
        probe = ax.text(0, 0, text, fontsize=ID_FONT, transform=None)
        bb = probe.get_window_extent(renderer)
        probe.remove()
        w, h = bb.width + 2, bb.height + 2
        x0, y0 = px[members[0]]
        best = None
        for r in (5, 12, 22, 34, 50, 70):
            for dx, dy in directions:
                cx, cy = x0 + dx * r, y0 + dy * r
                left = cx if dx > 0 else cx - w if dx < 0 else cx - w / 2
                bottom = cy if dy > 0 else cy - h if dy < 0 else cy - h / 2
                box = (left, bottom, left + w, bottom + h)
                cost = sum(_overlap(box, t) for t in taken) + 10 * _outside(box, frame)
                if best is None or cost < best[0]:
                    best = (cost, box, r)
            if best[0] == 0:
                break
        _, box, r = best
        scale = 72 / fig.dpi
        offset = ((box[0] + 1 - x0) * scale, (box[1] + 1 - y0) * scale)
        ax.annotate(text, (xs[members[0]], ys[members[0]]), xytext=offset,
                    textcoords="offset points", ha="left", va="bottom", fontsize=ID_FONT, zorder=4,
                    bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.75),
                    color=_darker(colours[members[0]]) if len(members) == 1 else "0.15",
                    arrowprops=dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=0, shrinkB=3) if r > 12 else None)
        taken.append(box)


def _darker(colour: str) -> str:
    """A config's colour dark enough to read as text on white (light shades become their deep tone)."""
    from matplotlib.colors import rgb_to_hsv, hsv_to_rgb, to_hex, to_rgb

    h, s, v = rgb_to_hsv(to_rgb(colour))
    return to_hex(hsv_to_rgb((h, max(s, 0.55) if s > 0.1 else s, min(v, 0.6))))


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _outside(box, frame) -> float:
    inner = (frame.x0, frame.y0, frame.x1, frame.y1)
    return (box[2] - box[0]) * (box[3] - box[1]) - _overlap(box, inner)


PANELS_PER_ROW = 4  # per-knob small multiples: one knob per figure (a full-width row of the report)


def _short(text, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _axis_label(column: str) -> str:
    if column == "latency_ms_p50":
        return "latency p50 (ms, lower is better)"
    return f"{label(column)} ({'higher' if higher_is_better(column) else 'lower'} is better)"


def _knob_effects(rows: list[dict], metrics: list[str], out_dir: Path) -> list[Plot]:
    """One figure per knob that varies alone somewhere: latency and each metric against the knob, one line per
    group of configs that share every other knob (``labels.effect_groups``). Numeric knobs on a numeric axis,
    the others (scheduler, quantize, bools…) as categories, each group's markers side by side."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in rows if r["n_ok"] > 0]
    panels = ["latency_ms_p50", *[m for m in metrics if any(_finite(r.get(m)) for r in rows)]]
    plots = []
    for knob in varying_knobs(rows):
        groups = effect_groups(rows, knob)
        if not groups:
            continue  # no two configs differ only in this knob
        members = [r for _, g in groups for r in g]
        numeric = all(_finite(r.get(knob)) for r in members)
        categories = _categories(members, knob)
        dodge = 0.5 / max(len(groups), 1)
        colours = config_colours(len(groups))

        def x_of(r, g):
            if numeric:
                return r[knob]
            return categories.index(_category_key(r.get(knob))) + (g - (len(groups) - 1) / 2) * dodge

        ncols = min(PANELS_PER_ROW, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.0 * ncols, 8.0), 2.8 * nrows + 0.3), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, panel in zip(axes.flat, panels):
            for g, (text, group) in enumerate(groups):
                pts = sorted((x_of(r, g), r[panel]) for r in group if _finite(r.get(panel)))
                if pts:  # categories have no order: markers only
                    ax.plot(*zip(*pts), marker=marker(g), linestyle="-" if numeric else "none", color=colours[g],
                            markersize=5, label=text or knob)
            if numeric and all(isinstance(r[knob], int) for r in members):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not numeric:
                ticks = [_short(_category_text(c), 16) for c in categories]
                tilt = len(categories) > 3 or max(map(len, ticks)) > 10
                ax.set_xticks(range(len(categories)), ticks, rotation=30 if tilt else 0,
                              ha="right" if tilt else "center", fontsize=8)
                ax.set_xlim(-0.6, len(categories) - 0.4)
            ax.set_xlabel(knob)
            ax.set_ylabel(_axis_label(panel), fontsize=9)
            ax.set_title(panel, fontsize=10)
            ax.grid(alpha=0.3)
        others = [k for k in varying_knobs(members) if k != knob]
        if others:
            title = f"effect of {knob} (one line per {', '.join(others)}; nothing else changes along a line)"
        else:  # one group: what it holds fixed
            title = f"effect of {knob}" + (f" (at {groups[0][0]})" if groups[0][0] else "")
        fig.suptitle(title, fontsize=11)
        fig.tight_layout(rect=(0, 0, 1, 0.93 if nrows == 1 else 0.96))
        if any(text for text, _ in groups) and len(groups) > 1:
            handles, labels = axes[0][0].get_legend_handles_labels()
            _legend_below(fig, handles, labels, fontsize=8)
        series = [(text, tuple(r["config_id"] for r in group), colours[g]) for g, (text, group) in enumerate(groups)]
        plots.append(_save(fig, out_dir, f"effect_{knob}", title, wide=True, series=series))
    return plots


def _category_key(value) -> str:
    return knob_key(value)


def _categories(rows: list[dict], knob: str) -> list[str]:
    """The knob's values among ``rows`` as category keys: unset first, then in first-seen order."""
    keys = list(dict.fromkeys(_category_key(r.get(knob)) for r in rows))
    return sorted(keys, key=lambda k: k != "null")


def _category_text(key: str) -> str:
    import json

    return "none" if key == "null" else knob_text(json.loads(key))


def _memory(rows: list[dict], out_dir: Path, names: Names) -> Plot | None:
    import matplotlib.pyplot as plt

    column = "peak_vram_mb" if any(_finite(r.get("peak_vram_mb")) for r in rows) else "peak_rss_mb"
    pts = [r for r in rows if _finite(r.get(column))]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.3 * len(pts) + 1.2))
    colours = [names.colours[r["config_id"]] for r in pts]
    ax.barh(range(len(pts)), [r[column] for r in pts], color=colours)
    ax.set_yticks(range(len(pts)), [names.legend(r["config_id"]) for r in pts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{column} (MB)")
    title = "peak VRAM per config" if column == "peak_vram_mb" else "peak RSS per config (CPU run)"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    series = [(names.legend(r["config_id"]), (r["config_id"],), c) for r, c in zip(pts, colours)]
    wide = len(pts) > 12 or max(len(s[0]) for s in series) > 40  # long labels: shown at natural size
    return _save(fig, out_dir, "memory", title, wide=wide, series=series)


def _step_profile(rows: list[dict], cells: list[dict], out_dir: Path, names: Names) -> Plot | None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    series = []
    for r in rows:
        steps = [c["step_ms"] for c in cells if c["config_id"] == r["config_id"] and c["status"] == "ok" and c["step_ms"]]
        n = min((len(s) for s in steps), default=0)
        if n:
            cid = r["config_id"]
            line, = ax.plot(range(1, n + 1), np.mean([s[:n] for s in steps], axis=0), marker=names.markers[cid],
                            markersize=4, lw=1.2, color=names.colours[cid], label=names.legend(cid))
            series.append((names.legend(cid), (cid,), line.get_color()))
    if not series:
        plt.close(fig)
        return None
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("denoising step")
    ax.set_ylabel("mean step time (ms)")
    ax.set_title("per-step time profile", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _legend_below(fig, *ax.get_legend_handles_labels())
    return _save(fig, out_dir, "step_profile", "per-step time profile", series=series)


def _served_families(rows: list[dict]) -> list[tuple[str, list[dict], str]]:
    """(name, rows, colour) of each family of load levels with serving figures."""
    from t2ibench.reports.serving import families, family_name

    groups = [g for g in families(rows) if any(_finite(r.get("achieved_rate")) for r in g)]
    return [(family_name(g), g, c) for g, c in zip(groups, config_colours(len(groups)))]


def _slo_lines(ax, rows: list[dict]) -> None:
    for slo in sorted({r["slo_ms"] for r in rows if _finite(r.get("slo_ms"))}):
        ax.axhline(slo, color="tab:red", lw=1, ls=":", zorder=1)
        ax.annotate(f"SLO {slo:g} ms", (1.0, slo), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=7.5, color="tab:red")


def _serving_latency(rows: list[dict], out_dir: Path) -> Plot | None:
    """Latency p50 (dashed) and p99 (solid) against achieved throughput, one line per config family, with the
    SLO: the chart every serving team draws."""
    import matplotlib.pyplot as plt

    fams = _served_families(rows)
    if not fams:
        return None
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    series = []
    for i, (name, group, colour) in enumerate(fams):
        pts = sorted((r for r in group if _finite(r.get("achieved_rate"))), key=lambda r: r["achieved_rate"])
        for column, style in (("latency_ms_p50", "--"), ("latency_ms_p99", "-")):
            xy = [(r["achieved_rate"], r[column]) for r in pts if _finite(r.get(column))]
            if xy:
                ax.plot(*zip(*xy), ls=style, marker=marker(i * 10), color=colour, markersize=5,
                        label=f"{name} ({column[-3:]})")
        series.append((name, tuple(r["config_id"] for r in group), colour))
    _slo_lines(ax, [r for _, g, _ in fams for r in g])
    ax.set_xlabel("achieved throughput (ok images/s)")
    ax.set_ylabel("latency from scheduled send (ms)")
    title = "latency against throughput (p50 dashed, p99 solid)"
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _legend_below(fig, *ax.get_legend_handles_labels())
    return _save(fig, out_dir, "serving_latency", title, series=series, section="serving")


def _serving_attainment(rows: list[dict], out_dir: Path) -> Plot | None:
    """SLO attainment against offered rate, one line per family, with the 99% target."""
    import matplotlib.pyplot as plt

    from t2ibench.reports.serving import ATTAINMENT

    fams = [(n, [r for r in g if _finite(r.get("slo_attainment")) and _finite(r.get("offered_rate"))], c)
            for n, g, c in _served_families(rows)]
    fams = [f for f in fams if f[1]]
    if not fams:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, group, colour) in enumerate(fams):
        pts = sorted((r["offered_rate"], r["slo_attainment"]) for r in group)
        ax.plot(*zip(*pts), marker=marker(i * 10), color=colour, markersize=5, label=name)
    ax.axhline(ATTAINMENT, color="tab:red", lw=1, ls=":")
    ax.annotate(f"target {ATTAINMENT:.0%}", (0.0, ATTAINMENT), xycoords=("axes fraction", "data"), ha="left",
                va="bottom", fontsize=7.5, color="tab:red")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("SLO attainment (share of scheduled requests)")
    title = "SLO attainment against offered rate"
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _legend_below(fig, *ax.get_legend_handles_labels())
    series = [(n, tuple(r["config_id"] for r in g), c) for n, g, c in fams]
    return _save(fig, out_dir, "serving_attainment", title, series=series, section="serving")


def _goodput_vs_quality(rows: list[dict], metric: str, out_dir: Path, random_weights: bool,
                        names: Names) -> Plot | None:
    """Goodput against a quality metric, with the Pareto frontier of the two (goodput: higher is better)."""
    import matplotlib.pyplot as plt

    pts = [r for r in rows if _finite(r.get("goodput")) and _finite(r.get(metric))]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    series = []
    for r in pts:
        cid = r["config_id"]
        line, = ax.plot([r["goodput"]], [r[metric]], linestyle="none", marker=names.markers[cid],
                        color=names.colours[cid], markersize=6, markeredgecolor="white", markeredgewidth=0.5,
                        zorder=3)
        series.append((names.ids[cid], (cid,), line.get_color()))
    direction = "max" if higher_is_better(metric) else "min"
    front = [p for p, on in zip(pts, pareto_front([[r["goodput"], r[metric]] for r in pts], ["max", direction]))
             if on]
    front.sort(key=lambda r: -r["goodput"])
    if len(front) > 1:
        ax.step([r["goodput"] for r in front], [r[metric] for r in front], where="post", color="tab:red", lw=1,
                alpha=0.7, zorder=2, label="Pareto frontier")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, borderaxespad=0.2)
    ax.margins(0.1)
    ax.set_xlabel("goodput (requests/s within the SLO, higher is better)")
    ax.set_ylabel(f"{label(metric)} ({'higher' if direction == 'max' else 'lower'} is better)")
    title = f"{label(metric)} vs goodput" + (" — random weights, not meaningful" if random_weights else "")
    ax.set_title(title, fontsize=10, loc="left", pad=18 if len(front) > 1 else 6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _place_ids(ax, [r["goodput"] for r in pts], [r[metric] for r in pts], [names.ids[r["config_id"]] for r in pts],
               [names.colours[r["config_id"]] for r in pts])
    return _save(fig, out_dir, f"{metric}_vs_goodput", title, series=series, section="serving")


def serving_plots(rows: list[dict], metrics: list[str], random_metrics: set[str], out_dir: Path,
                  names: Names) -> list[Plot | None]:
    """The Serving section's plots (none for a run without load levels)."""
    plots = [_serving_latency(rows, out_dir), _serving_attainment(rows, out_dir)]
    return plots + [_goodput_vs_quality(rows, m, out_dir, m in random_metrics, names) for m in metrics]


def make_plots(rows: list[dict], cells: list[dict], metrics: list[str], random_metrics: set[str],
               out_dir: Path) -> list[Plot]:
    """Every plot of the report. Text is drawn literally (mathtext off): a config named ``a $\\frac$ b``
    is a name, not a formula."""
    import matplotlib

    matplotlib.use("Agg")
    names = Names.of(rows)
    with matplotlib.rc_context(LITERAL_TEXT):
        plots = [_quality_vs_latency(rows, m, out_dir, m in random_metrics, names) for m in metrics]
        plots += _knob_effects(rows, metrics, out_dir)
        plots += [_memory(rows, out_dir, names), _step_profile(rows, cells, out_dir, names)]
        plots += serving_plots(rows, metrics, random_metrics, out_dir, names)
    return [p for p in plots if p is not None]
