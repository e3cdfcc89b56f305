"""Reports, regenerated from the run store alone: CSV, Markdown, HTML (with plots) and LaTeX."""

from __future__ import annotations

from pathlib import Path

from t2ibench.errors import UserError
from t2ibench.store import RunStore

FORMATS = ("html", "md", "csv", "latex")


def write_reports(store: RunStore, formats: tuple[str, ...] = FORMATS,
                  objectives: dict[str, str] | None = None) -> dict[str, Path]:
    """Write the requested formats into the run directory; returns format → path."""
    from t2ibench.registry import did_you_mean
    from t2ibench.reports.context import build_context

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown report format '{unknown[0]}'{did_you_mean(unknown[0], FORMATS)}; "
                        f"choose from {', '.join(FORMATS)}")
    ctx = build_context(store, objectives)
    run_dir = store.run_dir
    out: dict[str, Path] = {}
    if "csv" in formats:
        from t2ibench.reports.tables import cells_frame, results_frame

        cells_frame(store, ctx.cells).to_csv(run_dir / "cells.csv", index=False)
        results_frame(store, rows=ctx.rows).to_csv(run_dir / "results.csv", index=False)
        out["csv"] = run_dir / "results.csv"
    if "md" in formats:
        from t2ibench.reports.markdown import render_markdown

        out["md"] = run_dir / "report.md"
        out["md"].write_text(render_markdown(ctx), encoding="utf-8")
    if "latex" in formats:
        from t2ibench.reports.latex import render_latex

        out["latex"] = run_dir / "results.tex"
        out["latex"].write_text(render_latex(ctx.rows, ctx.metrics, f"t2ibench: {ctx.suite.get('name', '')}.",
                                             ctx.random_metrics), encoding="utf-8")
    if "html" in formats:
        from t2ibench.reports.html import write_html
        from t2ibench.reports.plots import make_plots

        plots = make_plots(ctx.rows, ctx.cells, ctx.metrics, set(ctx.random_metrics), run_dir / "plots")
        out["html"] = write_html(run_dir / "report.html", suite=ctx.suite, rows=ctx.rows, cells=ctx.cells,
                                 metrics=ctx.metrics, plots=plots, recommendation=ctx.recommendation,
                                 environment=ctx.environment, random_metrics=ctx.random_metrics,
                                 shared_gpus=bool(ctx.executor.get("share_gpus")),
                                 objectives=ctx.objectives, profiles=ctx.profiles)
    return out
