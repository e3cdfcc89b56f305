"""The Pareto frontier in N dimensions, aware of each objective's direction."""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """``True`` for each point that no other point dominates.

    ``directions`` holds ``"min"`` or ``"max"`` per objective. A point with a NaN objective is
    never on the front and never dominates. Equal points do not dominate each other, so
    duplicates on the front are all kept.
    """
    signs = [1.0 if d == "min" else -1.0 for d in directions]
    keyed = [
        None if any(v is None or math.isnan(v) for v in p) else [s * v for s, v in zip(signs, p)]
        for p in points
    ]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [
        k is not None and not any(o is not None and dominates(o, k) for o in keyed)
        for k in keyed
    ]


def frontier_mask(rows: list[Mapping], objectives: Mapping[str, str], eligible: Sequence[bool]) -> list[bool]:
    """Pareto flags for result rows; rows that are not ``eligible`` are neither on it nor compared."""
    if not objectives:
        return [False] * len(rows)
    names = list(objectives)
    points = [[_num(r.get(n)) if ok else math.nan for n in names] for r, ok in zip(rows, eligible)]
    return pareto_front(points, [objectives[n] for n in names])


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
