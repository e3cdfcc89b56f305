"""Report plots (matplotlib, PNG and SVG): quality vs latency with the frontier, per-knob effects,
peak memory per config, and the per-step time profile."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from t2ibench.reports.labels import higher_is_better, knob_text, label
from t2ibench.reports.pareto import pareto_front
from t2ibench.suites.knobs import KNOB_NAMES


# user strings (config names, knob values) are never parsed as TeX; SVG keeps text as text
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False, "svg.fonttype": "none"}


@dataclass(frozen=True)
class Plot:
    title: str
    png: Path
    svg: Path
    wide: bool = False  # shown on a row of its own, at its natural size


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _save(fig, out_dir: Path, stem: str, title: str, wide: bool = False) -> Plot:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Plot(title, png, svg, wide)


def _quality_vs_latency(rows: list[dict], metric: str, out_dir: Path, random_weights: bool) -> Plot | None:
    import matplotlib.pyplot as plt

    pts = [r for r in rows if _finite(r.get(metric)) and _finite(r.get("latency_ms_p50"))]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = [r["latency_ms_p50"] for r in pts]
    y = [r[metric] for r in pts]
    ax.plot(x, y, "o", color="tab:blue")
    for xi, r in zip(x, pts):  # the CI as given (it contains the point)
        if _finite(r.get(f"{metric}_lo")) and _finite(r.get(f"{metric}_hi")):
            ax.vlines(xi, r[f"{metric}_lo"], r[f"{metric}_hi"], color="0.6")
    for xi, yi, r in zip(x, y, pts):
        ax.annotate(_short(r["config"], 24), (xi, yi), fontsize=7, xytext=(4, 3), textcoords="offset points")
    direction = "max" if higher_is_better(metric) else "min"
    front = [p for p, on in zip(pts, pareto_front([[a, b] for a, b in zip(x, y)], ["min", direction])) if on]
    front.sort(key=lambda r: r["latency_ms_p50"])
    if len(front) > 1:
        ax.step([r["latency_ms_p50"] for r in front], [r[metric] for r in front], where="post",
                color="tab:red", label="Pareto frontier")
        ax.legend(fontsize=8)
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel(f"{label(metric)} ({'higher' if direction == 'max' else 'lower'} is better)")
    title = f"{label(metric)} vs latency" + (" — random weights, not meaningful" if random_weights else "")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, f"{metric}_vs_latency", title)


def _varying(rows: list[dict]) -> list[str]:
    return [k for k in KNOB_NAMES if len({str(r.get(k)) for r in rows}) > 1]


PANELS_PER_ROW = 4  # per-knob small multiples: one knob per figure (a full-width row of the report)


def _short(text, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _axis_label(column: str) -> str:
    if column == "latency_ms_p50":
        return "latency p50 (ms, lower is better)"
    return f"{label(column)} ({'higher' if higher_is_better(column) else 'lower'} is better)"


def _knob_effects(rows: list[dict], metrics: list[str], out_dir: Path) -> list[Plot]:
    """One figure per varying knob: latency and each metric against the knob, one line per value of
    the richest other knob. Numeric knobs on a numeric axis, the others (scheduler, bools…) as categories."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in rows if r["n_ok"] > 0]
    varying = _varying(rows)
    panels = ["latency_ms_p50", *[m for m in metrics if any(_finite(r.get(m)) for r in rows)]]
    plots = []
    for knob in varying:
        numeric = all(_finite(r.get(knob)) for r in rows)
        categories = list(dict.fromkeys(_category(r.get(knob)) for r in rows))
        x_of = (lambda r: r[knob]) if numeric else (lambda r: categories.index(_category(r.get(knob))))
        others = [k for k in varying if k != knob]  # one line per value of the richest other knob
        series_key = max(others, key=lambda k: len({str(r.get(k)) for r in rows}), default=None)
        groups: dict[str, list[dict]] = {}
        for r in rows:
            label = f"{series_key}={_short(_category(r.get(series_key)), 24)}" if series_key else "all"
            groups.setdefault(label, []).append(r)
        ncols = min(PANELS_PER_ROW, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.8 * nrows + 0.6), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, panel in zip(axes.flat, panels):
            for label, members in groups.items():
                pts = sorted((x_of(r), r[panel]) for r in members if _finite(r.get(panel)))
                if pts:  # categories have no order: markers only
                    ax.plot(*zip(*pts), marker="o", linestyle="-" if numeric else "none", label=label)
            if numeric and all(isinstance(r[knob], int) for r in rows):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not numeric:
                ax.set_xticks(range(len(categories)), [_short(c, 14) for c in categories],
                              rotation=30 if len(categories) > 3 else 0, ha="right" if len(categories) > 3 else "center")
            ax.set_xlabel(knob)
            ax.set_ylabel(_axis_label(panel), fontsize=9)
            ax.set_title(panel, fontsize=10)
            ax.grid(alpha=0.3)
        title = f"effect of {knob}" + (f" (one line per {series_key})" if series_key else "")
        fig.suptitle(title, fontsize=11)
        bottom = 0.0
        if len(groups) > 1:  # below the panels: a narrow figure has no room beside its title
            handles, labels = axes[0][0].get_legend_handles_labels()
            ncol = min(2 if ncols < 3 else 4, len(groups))
            fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=ncol, frameon=False)
            bottom = min(0.3, 0.06 * math.ceil(len(groups) / ncol) / nrows)
        fig.tight_layout(rect=(0, bottom, 1, 0.93 if nrows == 1 else 0.96))
        plots.append(_save(fig, out_dir, f"effect_{knob}", title, wide=True))
    return plots


def _category(value) -> str:
    text = knob_text(value)
    return "default" if text == "–" else text


def _memory(rows: list[dict], out_dir: Path) -> Plot | None:
    import matplotlib.pyplot as plt

    column = "peak_vram_mb" if any(_finite(r.get("peak_vram_mb")) for r in rows) else "peak_rss_mb"
    pts = [r for r in rows if _finite(r.get(column))]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(pts) + 1.2))
    ax.barh(range(len(pts)), [r[column] for r in pts], color="tab:green")
    ax.set_yticks(range(len(pts)), [_short(r["config"], 32) for r in pts])  # positions: equal names stay apart
    ax.invert_yaxis()
    ax.set_xlabel(f"{column} (MB)")
    title = "peak VRAM per config" if column == "peak_vram_mb" else "peak RSS per config (CPU run)"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, out_dir, "memory", title)


def _step_profile(rows: list[dict], cells: list[dict], out_dir: Path) -> Plot | None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    drawn = False
    for r in rows:
        steps = [c["step_ms"] for c in cells if c["config_id"] == r["config_id"] and c["status"] == "ok" and c["step_ms"]]
        n = min((len(s) for s in steps), default=0)
        if n:
            ax.plot(range(1, n + 1), np.mean([s[:n] for s in steps], axis=0), marker=".", label=_short(r["config"], 28))
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("denoising step")
    ax.set_ylabel("mean step time (ms)")
    ax.set_title("per-step time profile", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out_dir, "step_profile", "per-step time profile")


def make_plots(rows: list[dict], cells: list[dict], metrics: list[str], random_metrics: set[str],
               out_dir: Path) -> list[Plot]:
    """Every plot of the report. Text is drawn literally (mathtext off): a config named ``a $\\frac$ b``
    is a name, not a formula."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(LITERAL_TEXT):
        plots = [_quality_vs_latency(rows, m, out_dir, m in random_metrics) for m in metrics]
        plots += _knob_effects(rows, metrics, out_dir)
        plots += [_memory(rows, out_dir), _step_profile(rows, cells, out_dir)]
    return [p for p in plots if p is not None]
