"""The ``compare`` and ``export`` verbs, and the comparison's table (rich) and Markdown renderings."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from t2ibench.reports.compare import INFO_KEYS, Comparison, Row, compare, parse_gate_options
from t2ibench.reports.export import RunSummary, load_summary, summarize, write_summary

COLUMNS = ["config", "figure", "better", "base", "candidate", "change", "CI", "test", "gate", "verdict"]
MARKDOWN_COLUMNS = ["config", "figure", "base", "candidate", "change", "CI", "verdict"]
STYLE = {"regression": "bold red", "improvement": "green", "not significant": "yellow"}


def add_compare_parsers(verbs) -> None:
    p = verbs.add_parser(
        "compare", help="direction-aware regression check between two runs (exit 1 on regression)",
        epilog="examples:\n  t2ibench compare baseline.json runs/new\n"
               "  t2ibench compare runs/a runs/b --gate latency_ms_p50=3% --gate clip_score=0.5 --markdown",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", help="run directory or exported results.json")
    p.add_argument("cand", help="run directory or exported results.json")
    p.add_argument("--gate", action="append", default=[], metavar="FIGURE=VALUE",
                   help="allowed worsening: relative (5%%) or absolute (0.5); repeatable; overrides the suite's gates")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the comparison as JSON")
    out.add_argument("--markdown", action="store_true", help="print Markdown (for CI comments)")
    p.add_argument("--wide", action="store_true",
                   help="every column (figure direction, test, gate), one row per figure; the default fits 80 columns")
    p.set_defaults(func=_compare)

    p = verbs.add_parser(
        "export", help="write a run's versioned results.json (a baseline to commit)",
        description="Write a run's summary as a versioned results.json: a baseline to commit and compare with.",
        epilog="examples:\n  t2ibench export runs/sdxl -o baseline.json\n  t2ibench compare baseline.json runs/new",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory to export")
    p.add_argument("-o", "--output", default="results.json", metavar="FILE",
                   help="file to write; its folder must exist (default: results.json)")
    p.set_defaults(func=_export)


def _compare(args) -> int:
    gates = parse_gate_options(args.gate)
    result = compare(load_summary(args.base), load_summary(args.cand), gates)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    elif args.markdown:
        print(render_markdown(result, args.wide))
    else:
        print_comparison(result, wide=args.wide)
    return 1 if result.regressions else 0


def _export(args) -> int:
    from t2ibench.errors import UserError

    folder = Path(args.output).parent
    if not folder.is_dir():
        raise UserError(f"-o {args.output}: the folder {folder} does not exist (create it first)")
    if Path(args.output).is_dir():
        raise UserError(f"-o {args.output} is a folder; give the path of the .json file to write")
    print(write_summary(summarize(args.run_dir), args.output))
    return 0


def check_baseline(baseline: RunSummary, run_dir: Path) -> int:
    """``run --baseline``: compare the finished run with ``baseline``; 1 on regression."""
    result = compare(baseline, summarize(run_dir))
    print_comparison(result)
    return 1 if result.regressions else 0


FIGURE_LABEL = {"latency_ms_p50": "p50 ms", "latency_ms_p95": "p95 ms", "latency_ms_mean": "mean ms",
                "images_per_s": "img/s", "peak_vram_mb": "VRAM MB", "peak_rss_mb": "RSS MB",
                "latency_ms_p99": "p99 ms", "goodput": "goodput/s", "slo_attainment": "in SLO"}
ABSOLUTE_FIGURES = {"slo_attainment"}  # a share: its change and gate are in points, not percent of itself
VERDICT_TEXT = {"not significant": "within noise"}  # beyond the gate, but its CI includes no change
HEADERS = ["config: figure", "base", "cand", "change", "CI", "verdict"]  # the default table, grouped by config
FIGURE_WIDTH = 28  # the config/figure column's width when names are longer (they fold, never truncate)


def _num(v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:.0f}" if 1e3 <= abs(v) < 1e7 else f"{v:.4g}"


def _pct(x: float) -> str:
    return f"{x * 100:+.0f}%" if abs(x) >= 0.1 else f"{x * 100:+.1f}%"


def _ratio(r: Row) -> bool:
    """Whether the row's CI is of the ratio candidate ÷ base (latency, goodput)."""
    return r.test.startswith(("bootstrap ratio", "ratio of shares"))


def _change(r: Row) -> str:
    """The change, relative for timings and memory, absolute for metrics (the units of their gates and CIs)."""
    if _ratio(r) or (r.figure in FIGURE_LABEL and r.figure not in ABSOLUTE_FIGURES and not math.isnan(r.relative)):
        return "±0%" if r.delta == 0 else _pct(r.relative)
    return f"{r.delta:+.3g}"


def _ci(r: Row) -> str:
    """A ratio CI as percentages (latency), a difference CI in the metric's units; '' without one."""
    if r.ci is None:
        return ""
    lo, hi = ((_pct(r.ci[0] - 1)[:-1], _pct(r.ci[1] - 1)[:-1]) if _ratio(r)
              else (f"{r.ci[0]:+.2g}", f"{r.ci[1]:+.2g}"))
    return f"[{lo}, {hi}]"


def _cells(r: Row) -> list[str]:
    """Every column of the --wide table and of --markdown."""
    ci = "–" if r.ci is None else (f"×[{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if _ratio(r)
                                   else f"[{r.ci[0]:+.3g}, {r.ci[1]:+.3g}]")
    change = f"{r.delta:+.4g}" + ("" if math.isnan(r.relative) else f" ({r.relative:+.1%})")
    return [r.config, r.figure, "↑" if r.higher_is_better else "↓", _num(r.base), _num(r.cand), change, ci, r.test,
            str(r.gate), r.verdict]


def _headline(result: Comparison) -> str:
    n = len(result.regressions)
    return (f"{n} regression{'s' if n != 1 else ''}" if n else "no regression") + \
        f": {result.base.source} → {result.cand.source}"


def comparison_table(result: Comparison, width: int, wide: bool = False):
    """The rich table: by default grouped by config, five short columns fitted to ``width``
    (the config and figure column folds long names); ``wide``: every column, one row per figure."""
    from rich.cells import cell_len
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(_headline(result)))
    if wide:
        for col in COLUMNS:
            table.add_column(col, justify="right" if col in ("base", "candidate", "change") else "left",
                             no_wrap=True)
        for r in result.rows:
            table.add_row(*map(escape, _cells(r)), style=STYLE.get(r.verdict))
        return table
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in result.rows:
        groups.setdefault((r.config, r.config_id), []).append(r)
    cells = {id(r): [f"  {FIGURE_LABEL.get(r.figure, r.figure)}", _num(r.base), _num(r.cand), _change(r), _ci(r),
                     VERDICT_TEXT.get(r.verdict, r.verdict)] for r in result.rows}
    natural = [max(cell_len(h), *(cell_len(c[i]) for c in cells.values())) for i, h in enumerate(HEADERS)]
    others = sum(natural[1:]) + 3 * len(HEADERS) + 1  # box edges and one space of padding either side
    first = max(natural[0], min(FIGURE_WIDTH, max(cell_len(name) for name, _ in groups)))
    first = max(10, min(first, width - others))
    table.add_column(HEADERS[0], min_width=first, max_width=first, overflow="fold")
    for header in HEADERS[1:]:
        table.add_column(header, justify="left" if header in ("CI", "verdict") else "right", no_wrap=True)
    for i, ((config, _), mine) in enumerate(groups.items()):
        table.add_row(escape(config), *[""] * (len(HEADERS) - 1), style="bold")
        for r in mine:
            table.add_row(*map(escape, cells[id(r)]), style=STYLE.get(r.verdict),
                          end_section=r is mine[-1] and i < len(groups) - 1)
    return table


def print_comparison(result: Comparison, console=None, wide: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape

    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=200 if wide else 80)
    table = comparison_table(result, console.width, wide)
    if wide:  # every cell whole, however wide the table (a terminal wraps its lines)
        from rich.measure import Measurement

        width = console.width
        console.width = max(width, Measurement.get(console, console.options.update_width(10**5), table).maximum)
        try:
            console.print(table, crop=False)
        finally:
            console.width = width
    else:
        console.print(table)
    if not wide:
        console.print("[dim]CI: 99% for timings (in %), 95% for metrics (in units); --wide: all columns[/dim]")
    for warning in result.warnings:
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    for key, (b, c) in result.environment.items():
        if key in INFO_KEYS:
            console.print(escape(f"environment: {key}: {b} → {c}"))
    for note in result.notes:
        console.print(escape(f"note: {note}"))


def render_markdown(result: Comparison, wide: bool = False) -> str:
    """Markdown for CI comments: by default the config, figure, base, candidate, change, CI and verdict."""
    icon = {"regression": "❌ regression", "improvement": "✅ improvement"}
    shown = list(range(len(COLUMNS))) if wide else [COLUMNS.index(c) for c in MARKDOWN_COLUMNS]
    lines = [f"### t2ibench compare: {_headline(result)}", ""]
    lines += [f"> ⚠️ {w}" for w in result.warnings] + ([""] if result.warnings else [])
    lines += ["| " + " | ".join(COLUMNS[i] for i in shown) + " |", "|" + "---|" * len(shown)]
    for r in result.rows:
        cells = _cells(r)
        cells[-1] = icon.get(r.verdict, r.verdict)
        lines.append("| " + " | ".join(cells[i].replace("|", "\\|") for i in shown) + " |")
    if result.environment:
        lines += ["", "| environment | base | candidate |", "|---|---|---|"]
        lines += [f"| {k} | {b} | {c} |" for k, (b, c) in result.environment.items()]
    lines += [""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines).rstrip() + "\n"
