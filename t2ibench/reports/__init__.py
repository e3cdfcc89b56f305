"""Reports, regenerated from the run store alone: CSV tables, Markdown (HTML and LaTeX later)."""

from __future__ import annotations

from pathlib import Path

from t2ibench.errors import UserError
from t2ibench.harness.store import RunStore

FORMATS = ("csv", "md")


def write_reports(store: RunStore, formats: tuple[str, ...] = FORMATS) -> dict[str, Path]:
    """Write the requested formats into the run directory; returns format → path."""
    from t2ibench.registry import did_you_mean

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown report format '{unknown[0]}'{did_you_mean(unknown[0], FORMATS)}; "
                        f"choose from {', '.join(FORMATS)}")
    out: dict[str, Path] = {}
    run_dir = store.run_dir
    if "csv" in formats:
        from t2ibench.reports.tables import cells_frame, results_frame

        cells_frame(store).to_csv(run_dir / "cells.csv", index=False)
        results_frame(store).to_csv(run_dir / "results.csv", index=False)
        out["csv"] = run_dir / "results.csv"
    if "md" in formats:
        from t2ibench.reports.markdown import render_markdown

        (run_dir / "report.md").write_text(render_markdown(store))
        out["md"] = run_dir / "report.md"
    return out
