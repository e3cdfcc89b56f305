"""The CLI's results table (rich), fitted to the terminal's width.

When the table is too wide, whole columns are left out, lowest priority first, so the config name is
never squeezed: it keeps up to ``NAME_WIDTH`` characters and folds onto more lines beyond that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

NAME_WIDTH = 32  # the config column's width when names are longer (they fold, never truncate)
FIXED = ["config_id", "status", "n_ok", "p50 ms", "p95 ms", "img/s", "peak MB"]
# Left out first → last when the terminal is too narrow; then the metrics (last listed first), then p50.
DROP_ORDER = ["config_id", "peak MB", "img/s", "p95 ms", "n_ok", "status", "pareto"]


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict], str]
    justify: str = "right"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.0f}" if 1e4 <= abs(v) < 1e9 else f"{v:.4g}"  # 45549 ms, not 4.555e+04
    return str(v)


def _peak(r: dict) -> str:
    vram = r.get("peak_vram_mb")
    return _fmt(r.get("peak_rss_mb") if vram is None or (isinstance(vram, float) and math.isnan(vram)) else vram)


def columns(metrics: list[str]) -> list[Column]:
    """Every column in display order."""
    return [
        Column("config", lambda r: str(r["config"]), "left"),
        Column("config_id", lambda r: str(r["config_id"]), "left"),
        Column("status", lambda r: str(r["status"]), "left"),
        Column("n_ok", lambda r: str(r["n_ok"])),
        Column("p50 ms", lambda r: _fmt(r["latency_ms_p50"])),
        Column("p95 ms", lambda r: _fmt(r["latency_ms_p95"])),
        Column("img/s", lambda r: _fmt(r["images_per_s"])),
        Column("peak MB", _peak),
        *[Column(m, lambda r, m=m: _fmt(r[m])) for m in metrics],
        Column("pareto", lambda r: "✓" if r["pareto"] else ""),
    ]


def _drop_order(records: list[dict], metrics: list[str]) -> list[str]:
    """Columns that say nothing here go first (every status 'done', nobody on the frontier); a status
    other than 'done' outranks the metrics; p50 goes last."""
    quiet_status = all(r["status"] == "done" for r in records)
    first = ["config_id", *(["status"] if quiet_status else []),
             *(["pareto"] if not any(r["pareto"] for r in records) else [])]
    middle = [h for h in DROP_ORDER if h not in first and h != "status"]
    return first + middle + list(reversed(metrics)) + ([] if quiet_status else ["status"]) + ["p50 ms"]


def summary_table(records: list[dict], metrics: list[str], width: int, title: str = ""):
    """``(rich Table, headers left out)`` for result rows, fitted to ``width`` terminal columns."""
    from rich.cells import cell_len
    from rich.table import Table

    cols = columns(metrics)
    cells = {c.header: [c.cell(r) for r in records] for c in cols}
    natural = {h: max([cell_len(h), *(cell_len(v) for v in vs)]) for h, vs in cells.items()}
    name_width = min(natural["config"], max(NAME_WIDTH, cell_len("config")))

    def total(kept: list[Column]) -> int:  # box edges + one space of padding either side of each column
        return sum(name_width if c.header == "config" else natural[c.header] for c in kept) + 3 * len(kept) + 1

    kept, dropped = list(cols), []
    for header in _drop_order(records, metrics):
        if total(kept) <= width:
            break
        kept = [c for c in kept if c.header != header]
        dropped.append(header)
    name_width = max(1, min(name_width, width - total([c for c in kept if c.header != "config"]) - 3))
    table = Table(title=title or None)
    for c in kept:
        if c.header == "config":
            table.add_column(c.header, justify="left", min_width=name_width, overflow="fold")
        else:
            table.add_column(c.header, justify=c.justify, no_wrap=True)
    for i in range(len(records)):
        table.add_row(*[cells[c.header][i] for c in kept])
    return table, dropped


def stability_note(records: list[dict]) -> str:
    """The run's unstable configs in one sentence (``latency.instability``, kept in ``latency_unstable``)."""
    from t2ibench.reports.latency import unstable_note

    return unstable_note({str(r["config"]): r["latency_unstable"] for r in records
                          if isinstance(r.get("latency_unstable"), str) and r["latency_unstable"]})


def recommendation_lines(rec, width: int = 80) -> list[str]:
    """One or two lines under the table: the chosen config and why, and what was ruled out; or why none."""

    def fit(line: str) -> str:
        return line if len(line) <= width else line[:max(width - 1, 1)] + "…"

    if rec.config_id is None:
        if not rec.ruled_out:
            return [fit(rec.message)]
        first = "; ".join(f"{name}: {', '.join(why)}" for name, why in rec.ruled_out.items())
        return [fit("no config meets the constraints; see the report"), fit(f"ruled out: {first}")]
    chosen = rec.message.split(" Ruled out: ")[0]
    lines = [fit(chosen[0].lower() + chosen[1:])]
    if rec.ruled_out:
        why = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in rec.ruled_out.items())
        lines.append(fit(f"ruled out: {why}"))
    return lines
