"""The CLI's summary table in narrow terminals: columns are left out before a config name is squeezed."""

from __future__ import annotations

import io
import math
import types
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from t2ibench import cli
from t2ibench.reports.recommend import Recommendation
from t2ibench.reports.summary import summary_table

NAMES = ["steps=2 scheduler=euler", "steps=3 scheduler=dpmpp_2m", "a | b $\\frac$ c", "reference"]
METRICS = ["clip_score", "fid", "lpips", "lpips_diversity"]


def _records(status: str = "done") -> list[dict]:
    return [{"config": n, "config_id": f"{i:012x}", "status": status if i == 1 else "done", "n_ok": 6,
             "latency_ms_p50": 466.2867 + i, "latency_ms_p95": 1.389e4, "images_per_s": 2.188,
             "peak_vram_mb": math.nan, "peak_rss_mb": 872.12, "pareto": i == 0, "clip_score": -4.330668,
             "fid": 5.55e-17, "lpips": 0.000338, "lpips_diversity": 0.1147, "random_weights": "",
             "recompiles": 0} for i, n in enumerate(NAMES)]


def _render(records, width: int) -> tuple[list[str], list[str]]:
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    table, dropped = summary_table(records, METRICS, console.width, "results: runs/x")
    console.print(table)
    return console.file.getvalue().splitlines(), dropped


def _column(lines: list[str], index: int) -> list[str]:
    """Cell texts of one column (box-drawn rows), one entry per table line."""
    return [line.split("│")[index + 1].strip() for line in lines if line.startswith("│")]


@pytest.mark.parametrize("width", [80, 60, 40])
def test_names_survive_narrow_terminals_whole(width):
    lines, dropped = _render(_records(), width)
    assert all(len(line) <= width for line in lines)
    assert _column(lines, 0) == NAMES  # every name whole, on one line (all are ≤ 32 characters)
    assert "config_id" in dropped and "p50 ms" not in dropped
    assert _column(lines, 1)[0] == "466.3"  # p50 always shown beside the name


def test_wide_terminal_shows_every_column():
    lines, dropped = _render(_records(), 200)
    assert dropped == []
    header = next(line for line in lines if line.startswith("┃"))
    assert [h.strip() for h in header.strip("┃").split("┃")] == [
        "config", "config_id", "status", "n_ok", "p50 ms", "p95 ms", "img/s", "peak MB", *METRICS, "pareto"]


def test_columns_go_lowest_priority_first_and_a_failure_outranks_metrics():
    _, dropped = _render(_records(), 80)
    assert dropped[:2] == ["config_id", "status"]  # every status 'done': it says nothing
    assert dropped.index("peak MB") < dropped.index("lpips_diversity")
    _, dropped = _render(_records(status="failed"), 80)
    assert "status" not in dropped or dropped.index("status") > max(dropped.index(m) for m in METRICS if m in dropped)


def test_a_name_longer_than_the_column_folds_but_is_never_cut():
    long = "guidance_scale=7.5 steps=50 scheduler=dpmpp_2m_karras precision=fp16"
    records = _records()
    records[0]["config"] = long
    lines, _ = _render(records, 80)
    column = _column(lines, 0)
    assert "".join(column[: column.index(NAMES[1])]).replace(" ", "") == long.replace(" ", "")


def test_cli_summary_at_80_columns(monkeypatch, tmp_path):
    frame = pd.DataFrame(_records())
    for m in METRICS:
        frame[f"{m}_lo"] = frame[f"{m}_hi"] = frame[m]
    run = types.SimpleNamespace(results=lambda: frame, run_dir=Path(tmp_path), report_path=tmp_path / "report.html",
                                executor=lambda: {"name": "local", "actors": []},
                                recommendation=lambda: Recommendation(None, None, "No objectives set; no recommendation."),
                                suite={"name": "t", "configs": []})
    console = Console(width=80, file=io.StringIO(), color_system=None, highlight=False)
    monkeypatch.setattr(cli, "_console", lambda stderr=False: console)
    cli._print_summary(run)
    out = console.file.getvalue()
    lines = out.splitlines()
    assert _column(lines, 0) == NAMES
    assert "not shown (terminal too narrow): config_id" in out and "results.csv" in out
    assert "No objectives set; no recommendation." in out  # the recommendation (here: why there is none)
