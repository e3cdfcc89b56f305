"""``report.md``: the results table, what failed or was skipped, and the environment."""

from __future__ import annotations

import math

from t2ibench.harness.store import RunStore
from t2ibench.reports.tables import current_suite, result_records

SHOWN = ["latency_ms_p50", "latency_ms_p95", "images_per_s", "peak_vram_mb", "peak_rss_mb"]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "✓" if v else ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v).replace("|", "\\|")


def render_markdown(store: RunStore) -> str:
    suite = current_suite(store)
    env = store.get_meta("environment", {}) or {}
    rows = result_records(store)
    metric_cols = [k for k in (rows[0] if rows else {}) if k.endswith("_lo")]
    metrics = [k[:-3] for k in metric_cols]
    lines = [f"# t2ibench report: {suite.get('name', '?')}", ""]
    random_metrics = sorted({m for r in rows for m in r["random_weights"].split(",") if m})
    if random_metrics:
        lines += [f"> **Warning:** {', '.join(random_metrics)} computed with random weights: "
                  "their values are not meaningful (they only exercise the pipeline).", ""]
    model = suite.get("model", "?")
    if str(model).startswith("random:"):
        lines += [f"> Model `{model}` has random weights: latency and memory are real, images are noise.", ""]
    header = ["config", "config_id", "n_ok", *SHOWN, *metrics, "pareto"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [_fmt(r["config"]), f"`{r['config_id']}`", str(r["n_ok"])]
        cells += [_fmt(r[c]) for c in SHOWN]
        for m in metrics:
            ci = "" if math.isnan(r[f"{m}_lo"]) else f" [{_fmt(r[f'{m}_lo'])}, {_fmt(r[f'{m}_hi'])}]"
            cells.append(_fmt(r[m]) + ci)
        cells.append(_fmt(r["pareto"]))
        lines.append("| " + " | ".join(cells) + " |")
    problems = [r for r in rows if r["status"] in ("skipped", "failed") or r["n_failed"] or r["n_nan"]]
    if problems:
        lines += ["", "## Skipped, failed or NaN", ""]
        for r in problems:
            why = r["reason"] or f"{r['n_failed']} failed, {r['n_nan']} NaN images"
            lines.append(f"- **{_fmt(r['config'])}** (`{r['config_id']}`): {r['status']}: {_fmt(why)}")
    lines += ["", "## Environment", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in env.items() if v is not None]
    return "\n".join(lines) + "\n"
