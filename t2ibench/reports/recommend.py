"""Recommend one config: the best on the primary objective among those meeting every constraint.

Objectives are taken in priority order, each keeping the configs tied with the best so far on it;
the next objective decides among those. A tie is an equal value, or, for an objective with a
confidence interval (``latency_ms_p50``: its 95% CI from the latency samples, see
``reports.latency.median_ci``), a CI that overlaps the best config's: a latency difference inside
the noise is no win, and the message says when the next objective decided because of it.
"""

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


# objective → its 95% CI columns in the results rows
CI_COLUMNS = {"latency_ms_p50": ("latency_ms_p50_ci_low", "latency_ms_p50_ci_high"),
              "latency_ms_p99": ("latency_ms_p99_ci_low", "latency_ms_p99_ci_high")}  # served levels


def _ci(row: Mapping, column: str) -> tuple[float, float] | None:
    lo, hi = (_value(row, c) for c in CI_COLUMNS.get(column, ("", "")))
    return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)


def _shown(row: Mapping, column: str) -> str:
    """``3195`` or ``3195, 95% CI 3100–3300``."""
    ci = _ci(row, column)
    return _fmt(_value(row, column)) + (f", 95% CI {_fmt(ci[0])}–{_fmt(ci[1])}" if ci else "")


def _choose(candidates: list[Mapping], objectives: Mapping[str, str]) -> tuple[Mapping, list[tuple[str, list]]]:
    """The recommended row and, per objective where CIs overlapped, ``(objective, the tied rows)``."""
    pool, noise = list(candidates), []
    for name, direction in objectives.items():
        sign = 1 if direction == "min" else -1
        lead = min(pool, key=lambda r: sign * _nan_last(_value(r, name), direction))
        lead_value, lead_ci = _value(lead, name), _ci(lead, name)

        def equal(row: Mapping) -> bool:
            v = _value(row, name)
            return v == lead_value or (math.isnan(v) and math.isnan(lead_value))

        def tied(row: Mapping) -> bool:
            ci = _ci(row, name)
            overlap = ci is not None and lead_ci is not None and ci[0] <= lead_ci[1] and lead_ci[0] <= ci[1]
            return equal(row) or overlap

        kept = [r for r in pool if tied(r)]
        if not all(equal(r) for r in kept):
            noise.append((name, kept))
        pool = kept
    names = list(objectives)
    best = min(pool, key=lambda r: tuple((1 if objectives[n] == "min" else -1) * _nan_last(_value(r, n), objectives[n])
                                         for n in names))
    return best, noise


RATE_TOLERANCE = 1e-6  # relative: a level's offered rate is the rate its scenario asked for


def violations(row: Mapping, constraints: Mapping[str, Mapping]) -> list[str]:
    """Each constraint the row breaks, e.g. 'peak_vram_mb 13100 > max 12000'; an unmeasured column breaks it.
    A bound with ``rate`` holds at that offered rate: a row served at another rate, or not served, breaks it."""
    out = []
    for column, bound in constraints.items():
        v = _value(row, column)
        lo, hi, rate = bound.get("min"), bound.get("max"), bound.get("rate")
        offered = _value(row, "offered_rate")
        if rate is not None and not math.isclose(offered, rate, rel_tol=RATE_TOLERANCE):
            out.append(f"{column} is constrained at {_fmt(rate)} req/s, "
                       + ("not served" if math.isnan(offered) else f"offered_rate {_fmt(offered)}"))
        elif math.isnan(v):
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

    best, noise = _choose(candidates, objectives)
    word = {"min": "lowest", "max": "highest"}
    bounds = ", ".join(f"{c} {'≤ ' + _fmt(b['max']) if b.get('max') is not None else ''}"
                       f"{' and ' if b.get('max') is not None and b.get('min') is not None else ''}"
                       f"{'≥ ' + _fmt(b['min']) if b.get('min') is not None else ''}"
                       f"{' at ' + _fmt(b['rate']) + ' req/s' if b.get('rate') is not None else ''}"
                       for c, b in constraints.items())
    among = f"among {len(candidates)} of {plural(len(rows), 'config')}" + (f" meeting {bounds}" if constraints else "")
    ties = dict(noise)
    if primary in ties:  # the primary objective could not tell the leaders apart
        others = [str(r["config"]) for r in ties[primary] if r is not best]
        message = (f"Recommended: {best['config']} ({best['config_id']}): its {primary} ({_shown(best, primary)}) "
                   f"is within the noise of {', '.join(others)} (95% CIs overlap), so ")
        message += (f"the next objectives decided (the {word[objectives[names[1]]]} {names[1]}: "
                    f"{_fmt(_value(best, names[1]))})" if len(names) > 1
                    else f"with no further objective the {word[objectives[primary]]} point value was kept")
        message += f"; {among}."
    else:
        message = (f"Recommended: {best['config']} ({best['config_id']}): the {word[objectives[primary]]} {primary} "
                   f"({_shown(best, primary)}) {among}.")
    for name, kept in noise:
        if name != primary:
            message += (f" On {name} it is within the noise of "
                        f"{', '.join(str(r['config']) for r in kept if r is not best)} (95% CIs overlap).")
    if ruled_out:
        message += f" Ruled out: {len(ruled_out)} (" + "; ".join(
            f"{n}: {', '.join(w)}" for n, w in list(ruled_out.items())[:5]) + (", …" if len(ruled_out) > 5 else "") + ")."
    return Recommendation(best["config_id"], best["config"], message, ruled_out)


def _nan_last(v: float, direction: str) -> float:
    if math.isnan(v):
        return math.inf if direction == "min" else -math.inf
    return v
