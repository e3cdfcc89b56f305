"""Recommend one config: the best on the primary objective among those meeting every constraint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from t2ibench.base import plural


@dataclass(frozen=True)
class Recommendation:
    config_id: str | None
    config: str | None
    message: str  # plain language, shown on top of every report
    ruled_out: dict[str, list[str]] = field(default_factory=dict)  # config name → why


def _value(row: Mapping, column: str) -> float:
    try:
        return float(row.get(column))
    except (TypeError, ValueError):
        return math.nan


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def violations(row: Mapping, constraints: Mapping[str, Mapping]) -> list[str]:
    """Each constraint the row breaks, e.g. 'peak_vram_mb 13100 > max 12000'; an unmeasured column breaks it."""
    out = []
    for column, bound in constraints.items():
        v = _value(row, column)
        lo, hi = bound.get("min"), bound.get("max")
        if math.isnan(v):
            out.append(f"{column} not measured")
        elif hi is not None and v > hi:
            out.append(f"{column} {_fmt(v)} > max {_fmt(hi)}")
        elif lo is not None and v < lo:
            out.append(f"{column} {_fmt(v)} < min {_fmt(lo)}")
    return out


def recommend(rows: list[Mapping], objectives: Mapping[str, str], constraints: Mapping[str, Mapping],
              eligible: list[bool] | None = None) -> Recommendation:
    """``objectives`` in priority order (the first is primary; the others break ties)."""
    if not rows:
        return Recommendation(None, None, "No configs in this run.")
    if not objectives:
        return Recommendation(None, None, "No objectives set (add `objectives:` to the suite or pass --objectives); "
                                          "no recommendation.")
    eligible = eligible if eligible is not None else [True] * len(rows)
    names = list(objectives)
    primary = names[0]
    ruled_out: dict[str, list[str]] = {}
    candidates = []
    for row, ok in zip(rows, eligible):
        reasons = [] if ok else [row.get("pareto_note") or "not eligible"]
        if ok and math.isnan(_value(row, primary)):
            reasons.append(f"{primary} not measured")
        reasons += violations(row, constraints) if ok else []
        if reasons:
            ruled_out[str(row["config"])] = reasons
        else:
            candidates.append(row)
    if not candidates:
        detail = "; ".join(f"{name}: {', '.join(why)}" for name, why in ruled_out.items())
        return Recommendation(None, None, f"No config satisfies the constraints ({detail}).", ruled_out)

    def key(row: Mapping) -> tuple:
        return tuple((1 if objectives[n] == "min" else -1) * _nan_last(_value(row, n), objectives[n]) for n in names)

    best = min(candidates, key=key)
    direction = "lowest" if objectives[primary] == "min" else "highest"
    bounds = ", ".join(f"{c} {'≤ ' + _fmt(b['max']) if b.get('max') is not None else ''}"
                       f"{' and ' if b.get('max') is not None and b.get('min') is not None else ''}"
                       f"{'≥ ' + _fmt(b['min']) if b.get('min') is not None else ''}" for c, b in constraints.items())
    message = (f"Recommended: {best['config']} ({best['config_id']}): the {direction} {primary} "
               f"({_fmt(_value(best, primary))}) among {len(candidates)} of {plural(len(rows), 'config')}"
               + (f" meeting {bounds}" if constraints else "") + ".")
    if ruled_out:
        message += f" Ruled out: {len(ruled_out)} (" + "; ".join(
            f"{n}: {', '.join(w)}" for n, w in list(ruled_out.items())[:5]) + (", …" if len(ruled_out) > 5 else "") + ")."
    return Recommendation(best["config_id"], best["config"], message, ruled_out)


def _nan_last(v: float, direction: str) -> float:
    if math.isnan(v):
        return math.inf if direction == "min" else -math.inf
    return v
