"""The ``compare`` and ``export`` verbs, and the comparison's table (rich) and Markdown renderings."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from t2ibench.reports.compare import Comparison, Row, compare, parse_gate_options
from t2ibench.reports.export import RunSummary, load_summary, summarize, write_summary

COLUMNS = ["config", "figure", "better", "base", "candidate", "change", "CI", "test", "gate", "verdict"]
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
        print(render_markdown(result))
    else:
        print_comparison(result)
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


def _num(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.4g}"


def _cells(r: Row) -> list[str]:
    change = f"{r.delta:+.4g}" + ("" if math.isnan(r.relative) else f" ({r.relative:+.1%})")
    ci = "–" if r.ci is None else (f"×[{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if r.test.startswith("bootstrap ratio")
                                   else f"[{r.ci[0]:+.3g}, {r.ci[1]:+.3g}]")
    return [r.config, r.figure, "↑" if r.higher_is_better else "↓", _num(r.base), _num(r.cand), change, ci, r.test,
            str(r.gate), r.verdict]


def _headline(result: Comparison) -> str:
    n = len(result.regressions)
    return (f"{n} regression{'s' if n != 1 else ''}" if n else "no regression") + \
        f": {result.base.source} → {result.cand.source}"


def print_comparison(result: Comparison, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False, width=None if Console().is_terminal else 200)
    table = Table(title=_headline(result))
    for col in COLUMNS:
        table.add_column(col, justify="right" if col in ("base", "candidate", "change") else "left")
    for r in result.rows:
        table.add_row(*_cells(r), style=STYLE.get(r.verdict))
    console.print(table)
    for key, (b, c) in result.environment.items():
        console.print(f"environment: {key}: {b} → {c}")
    for note in result.notes:
        console.print(f"note: {note}")


def render_markdown(result: Comparison) -> str:
    icon = {"regression": "❌ regression", "improvement": "✅ improvement"}
    lines = [f"### t2ibench compare: {_headline(result)}", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in result.rows:
        cells = _cells(r)
        cells[-1] = icon.get(r.verdict, r.verdict)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if result.environment:
        lines += ["", "| environment | base | candidate |", "|---|---|---|"]
        lines += [f"| {k} | {b} | {c} |" for k, (b, c) in result.environment.items()]
    lines += [""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines).rstrip() + "\n"
