"""Results tables read from the store alone: one row per image (cells) and one per config (results)."""

from __future__ import annotations

import json
import math

import numpy as np

from t2ibench.reports import latency, serving
from t2ibench.reports.pareto import frontier_mask
from t2ibench.store import RunStore, call_records, cell_records, current_suite, scope
from t2ibench.suites.knobs import KNOB_NAMES, knob_default

CELL_CSV_COLUMNS = [
    "config_id", "config", "prompt_id", "prompt", "seed", "status", "error", "latency_ms", "encode_ms",
    "denoise_ms", "decode_ms", "step_ms", "peak_vram_mb", "peak_rss_mb", "image_path",
]
RESULT_FIGURES = ["n_ok", "n_failed", "latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s",
                  "peak_vram_mb", "peak_rss_mb"]
RESULT_EXTRAS = ["pareto_note", "n_nan", "n_skipped", "status", "reason", "is_reference", "encode_ms_mean", "denoise_ms_mean",
                 "decode_ms_mean", "step_ms_mean", "load_ms", "warmup_ms", "compile_ms", "export_ms", "recompiles",
                 "random_weights", "cache_hit_rate", "applied", "latency_ms_p50_ci_low", "latency_ms_p50_ci_high",
                 "latency_cv", "latency_unstable", "upscale_ms_mean", *serving.SERVING_COLUMNS,
                 *serving.SERVING_EXTRAS]


def against_reference_columns() -> set[str]:
    """Metric columns measured against a reference: the reference config cannot be on their frontier."""
    from t2ibench.metrics.registry import columns

    return {name for name, c in columns().items() if c.against}


def cells_frame(store: RunStore, rows: list[dict] | None = None):
    """cells.csv as a DataFrame; ``rows`` are ``cell_records(store)`` when already read."""
    import pandas as pd

    rows = cell_records(store) if rows is None else rows
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(CELL_CSV_COLUMNS + (list(rows[0]) if rows else []))))
    frame["step_ms"] = frame["step_ms"].map(lambda v: json.dumps([round(x, 4) for x in v]) if isinstance(v, list) else v)
    return frame


def result_records(store: RunStore, objectives: dict | None = None) -> list[dict]:
    configs, _ = scope(store)
    cells = cell_records(store)
    calls = call_records(store, cells)
    metric_rows = store.metrics()
    metric_names = list(dict.fromkeys(m["metric"] for m in metric_rows))
    suite = current_suite(store)
    served = serving.config_figures(store)
    rows = []
    for cfg in configs:
        mine = [c for c in cells if c["config_id"] == cfg["config_id"]]
        my_calls = [c for c in calls if c["config_id"] == cfg["config_id"]]
        ok = [c for c in mine if c["status"] == "ok"]
        knobs = dict(cfg["knobs"], model=cfg["model"])
        row = {"config_id": cfg["config_id"], "config": cfg["name"]}
        backend = knobs.get("backend", "torch")
        row.update({k: _cell_value(knobs[k] if k in knobs else knob_default(k, backend)) for k in KNOB_NAMES})
        peaks_v = [c["peak_vram_mb"] for c in my_calls if c["peak_vram_mb"] is not None]
        peaks_r = [c["peak_rss_mb"] for c in my_calls if c["peak_rss_mb"] is not None]
        row.update(n_ok=len(ok), n_failed=sum(c["status"] == "failed" for c in mine))
        my_samples = latency.samples(my_calls)
        row.update(latency.figures(my_samples, knobs.get("batch_size") or 1))
        row.update(peak_vram_mb=max(peaks_v) if peaks_v else math.nan,
                   peak_rss_mb=max(peaks_r) if peaks_r else math.nan)
        random_metrics = []
        for name in metric_names:
            m = next((r for r in metric_rows if r["config_id"] == cfg["config_id"] and r["metric"] == name), None)
            row[name] = m["value"] if m else math.nan
            row[f"{name}_lo"] = m["lo"] if m and m["lo"] is not None else math.nan
            row[f"{name}_hi"] = m["hi"] if m and m["hi"] is not None else math.nan
            if m and m["random_weights"]:
                random_metrics.append(name)
        row.update(
            n_nan=sum(c["status"] == "nan" for c in mine), n_skipped=sum(c["status"] == "skipped" for c in mine),
            status=cfg["status"], reason=cfg["reason"], is_reference=bool(cfg["is_reference"]),
            **latency.phase_means(my_calls),
            load_ms=cfg["load_ms"], warmup_ms=cfg["warmup_ms"], recompiles=cfg["recompiles"],
            compile_ms=cfg.get("compile_ms"),  # absent from a store written before the column, opened read-only
            export_ms=cfg.get("export_ms"),
            random_weights=",".join(random_metrics),
            cache_hit_rate=_mean([c.get("cache_hit_rate") for c in my_calls if c["status"] == "ok"]),
            applied=json.dumps(cfg["applied"], sort_keys=True) if cfg.get("applied") else "",
            **latency.stability(my_samples),  # p50's 95% CI, the samples' spread, why they look unstable
            upscale_ms_mean=_mean([c.get("upscale_ms") for c in my_calls if c["status"] == "ok"]),
        )
        _serving_columns(row, cfg, served.get(cfg["config_id"]))
        rows.append(row)
    limits = serving.max_rate_within_slo([{"config_id": cfg["config_id"], "model": cfg["model"],
                                          "knobs": cfg["knobs"], **_level_of(row)}
                                         for cfg, row in zip(configs, rows) if serving.is_serving(row)])
    for row in rows:
        row["slo_max_rate"] = limits.get(row["config_id"], math.nan)
    objectives = objectives if objectives is not None else (suite.get("objectives") or {})
    notes = [_exclusion(r, objectives) for r in rows]
    for row, note, on_front in zip(rows, notes, frontier_mask(rows, objectives, [n == "" for n in notes])):
        row["pareto"] = on_front
        row["pareto_note"] = note
    return rows


def _serving_columns(row: dict, cfg: dict, figures: dict | None) -> None:
    """A load-scenario row's serving columns, from its final level's requests; its latency figures (p50, p95,
    mean, p50's CI) and images/s are the requests' too. Other rows leave them NaN."""
    if "scenario" in row:
        row["scenario"] = serving.scenario_label(cfg["knobs"].get("scenario"))
    empty = {c: math.nan for c in serving.SERVING_COLUMNS + serving.SERVING_EXTRAS}
    row.update(empty, errors_by_kind="")
    if figures is None:
        if serving.is_serving(row):  # a load config with no level measured: no call figures either
            row.update({f: math.nan for f in latency.LATENCY_FIGURES})
        return
    row.update({c: figures[c] for c in serving.SERVING_COLUMNS + serving.SERVING_EXTRAS if c in figures})
    row.update({f: figures[f] for f in ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean",
                                        "latency_ms_p50_ci_low", "latency_ms_p50_ci_high")})
    row["images_per_s"] = figures["achieved_rate"]
    x = np.asarray(figures["latency_samples"], np.float64)
    row["latency_cv"] = float(np.std(x, ddof=1) / np.mean(x)) if len(x) >= 2 and np.mean(x) > 0 else math.nan
    row["latency_unstable"] = ""  # a tail under load is what is measured, not noise


def _level_of(row: dict) -> dict:
    return {"offered_rate": row.get("offered_rate"), "slo_attainment": row.get("slo_attainment")}


def _mean(values: list) -> float:
    """The mean of the values that were measured (NaN when none was)."""
    measured = [v for v in values if v is not None]
    return float(np.mean(measured)) if measured else math.nan


def _exclusion(row: dict, objectives: dict) -> str:
    """Why a config cannot be on the frontier ('' when it can)."""
    if row["n_ok"] == 0:
        return f"excluded: {row['status']}" + (f" ({row['reason']})" if row["reason"] else "")
    if row["recompiles"]:
        return f"excluded: recompiled {row['recompiles']}× during timed calls (its latency includes compilation)"
    against = sorted(o for o in objectives if o in against_reference_columns())
    if row["is_reference"] and against:
        return f"excluded: reference ({', '.join(against)} measured against it)"
    missing = [o for o in objectives if o in row and (row[o] is None or math.isnan(row[o]))]
    return f"excluded: {', '.join(missing)} not measured" if missing else ""


def metric_columns(rows: list[dict]) -> list[str]:
    """The metric columns (value, _lo, _hi per metric) in first-seen order."""
    fixed = {"config_id", "config", *KNOB_NAMES, *RESULT_FIGURES, "pareto", *RESULT_EXTRAS}
    return [k for k in (rows[0] if rows else {}) if k not in fixed]


def metric_names(rows: list[dict]) -> list[str]:
    return [c[:-3] for c in metric_columns(rows) if c.endswith("_lo")]


def _cell_value(v):
    if isinstance(v, (dict, list)):  # structured knobs (quantize, cache, lora…) as JSON in results.csv
        return json.dumps(v, sort_keys=True)
    return v


def results_frame(store: RunStore, objectives: dict | None = None, rows: list[dict] | None = None):
    """results.csv as a DataFrame; ``rows`` are ``result_records(store, objectives)`` when already computed."""
    import pandas as pd

    rows = result_records(store, objectives) if rows is None else rows
    if not rows:
        return pd.DataFrame(columns=["config_id", "config", *KNOB_NAMES, *RESULT_FIGURES, "pareto", *RESULT_EXTRAS])
    metric_cols = metric_columns(rows)
    order = ["config_id", "config", *KNOB_NAMES, *RESULT_FIGURES, *metric_cols, "pareto", *RESULT_EXTRAS]
    return pd.DataFrame(rows)[order]
