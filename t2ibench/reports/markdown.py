"""``report.md``: the recommendation, the results table, what failed or was skipped, the environment."""

from __future__ import annotations

import math

from t2ibench.reports.context import ReportContext
from t2ibench.reports.labels import label

SHOWN = ["latency_ms_p50", "latency_ms_p95", "images_per_s", "peak_vram_mb", "peak_rss_mb"]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "✓" if v else ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    text = str(v).replace("\\", "\\\\").replace("|", "\\|")  # backslash first: "\\|" must not unescape a pipe
    return " ".join(text.splitlines())


SERVING_SHOWN = ["offered_rate", "achieved_rate", "latency_ms_p50", "latency_ms_p99", "slo_ms", "slo_attainment",
                 "goodput", "error_rate", "rejected", "mean_batch", "slo_max_rate"]


def _serving(rows: list[dict]) -> list[str]:
    """The serving table (load levels only; p99 with its 95% CI) and the highest rate within each family's SLO."""
    from t2ibench.reports.serving import has_levels, is_serving, slo_lines

    if not has_levels(rows):
        return []
    served = [r for r in rows if is_serving(r)]
    lines = ["", "## Serving", ""] + [f"- {_fmt(line)}" for line in slo_lines(rows)]
    lines += ["", "| config | scenario | " + " | ".join(SERVING_SHOWN) + " |", "|" + "---|" * (len(SERVING_SHOWN) + 2)]
    for r in served:
        cells = [_fmt(r["config"]), _fmt(r.get("scenario"))]
        for c in SERVING_SHOWN:
            lo, hi = r.get(f"{c}_ci_low"), r.get(f"{c}_ci_high")
            ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if isinstance(lo, float) and not math.isnan(lo) else ""
            cells.append(_fmt(r.get(c)) + ci)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(ctx: ReportContext) -> str:
    from t2ibench.metrics.registry import column

    rows, metrics = ctx.rows, ctx.metrics
    lines = [f"# t2ibench report: {ctx.suite.get('name', '?')}", ""]
    if ctx.random_metrics:
        lines += [f"> **Warning:** {', '.join(ctx.random_metrics)} computed with random weights: "
                  "their values are not meaningful (they only exercise the pipeline).", ""]
    model = ctx.suite.get("model", "?")
    if str(model).startswith("random:"):
        lines += [f"> Model `{model}` has random weights: latency and memory are real, images are noise.", ""]
    from t2ibench.reports.summary import stability_note

    if unstable := stability_note(rows):
        lines += [f"> **Warning:** {_fmt(unstable)}", ""]
    from t2ibench.reports.mlperf import verdicts

    for verdict in verdicts(ctx.suite, rows):
        head, *rest = verdict.lines()
        lines += [f"**{_fmt(head)}**", ""] + [f"- {_fmt(line.strip())}" for line in rest] + [""]
    lines += [f"**{_fmt(ctx.recommendation.message)}**", ""]
    header = ["config", "config_id", "n_ok", *SHOWN, *[label(m) for m in metrics], "pareto"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [_fmt(r["config"]), f"`{r['config_id']}`", str(r["n_ok"])]
        cells += [_fmt(r[c]) for c in SHOWN]
        for m in metrics:
            ci = "" if math.isnan(r[f"{m}_lo"]) else f" [{_fmt(r[f'{m}_lo'])}, {_fmt(r[f'{m}_hi'])}]"
            cells.append(_fmt(r[m]) + ci)
        cells.append(_fmt(r["pareto"]))
        lines.append("| " + " | ".join(cells) + " |")
    notes = [(label(m), column(m).estimand) for m in metrics if column(m) is not None and column(m).estimand]
    if notes:
        lines += ["", "Each metric and its 95% CI (over prompts) estimate:", ""]
        lines += [f"- **{name}**: {_fmt(text)}" for name, text in notes]
    lines += _serving(rows)
    excluded = [r for r in rows if r["pareto_note"] and ctx.objectives]
    if excluded:
        lines += ["", "Not on the Pareto frontier by rule: " + "; ".join(
            f"{_fmt(r['config'])} ({r['pareto_note']})" for r in excluded), ""]
    problems = [r for r in rows if r["status"] in ("skipped", "failed") or r["n_failed"] or r["n_nan"]]
    if problems:
        lines += ["", "## Skipped, failed or NaN", ""]
        for r in problems:
            why = r["reason"] or f"{r['n_failed']} failed, {r['n_nan']} NaN images"
            lines.append(f"- **{_fmt(r['config'])}** (`{r['config_id']}`): {r['status']}: {_fmt(why)}")
    lines += ["", "## Environment", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in ctx.environment.items() if v is not None]
    return "\n".join(lines) + "\n"
