"""Publishing tables: a booktabs LaTeX table, the best value per column in bold, CIs as ±."""

from __future__ import annotations

import math

from t2ibench.reports.labels import higher_is_better, label

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
FIGURES = [("latency_ms_p50", "p50 (ms)", "min"), ("latency_ms_p95", "p95 (ms)", "min"),
           ("images_per_s", "img/s", "max"), ("peak_vram_mb", "VRAM (MB)", "min"), ("peak_rss_mb", "RSS (MB)", "min")]


def escape_latex(text: str) -> str:
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def render_latex(rows: list[dict], metrics: list[str], caption: str = "", random_metrics: list[str] = ()) -> str:
    columns = [(c, label, d) for c, label, d in FIGURES if any(_finite(r.get(c)) for r in rows)]
    columns += [(m, label(m), "max" if higher_is_better(m) else "min") for m in metrics]
    best = {}
    for col, _, direction in columns:
        values = [r[col] for r in rows if _finite(r.get(col)) and not r.get("is_reference")]
        if values:
            best[col] = max(values) if direction == "max" else min(values)

    def cell(r: dict, col: str) -> str:
        v = r.get(col)
        if not _finite(v):
            return "--"
        text = f"{v:.4g}"
        lo, hi = r.get(f"{col}_lo"), r.get(f"{col}_hi")
        if _finite(lo) and _finite(hi):
            text += f" $\\pm$ {(hi - lo) / 2:.2g}"
        return f"\\textbf{{{text}}}" if col in best and v == best[col] and not r.get("is_reference") else text

    header = " & ".join(["Config", *[escape_latex(label) + (" $\\uparrow$" if d == "max" else " $\\downarrow$")
                                     for _, label, d in columns]])
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{l{'r' * len(columns)}}}", r"\toprule",
             header + r" \\", r"\midrule"]
    for r in rows:
        lines.append(" & ".join([escape_latex(r["config"]), *[cell(r, c) for c, _, _ in columns]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    note = caption
    if random_metrics:
        note += f" {', '.join(random_metrics)} computed with random weights: not meaningful."
    if note.strip():
        lines.append(rf"\caption{{{escape_latex(note.strip())} Best per column in bold; $\pm$ is half the 95\% CI.}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
