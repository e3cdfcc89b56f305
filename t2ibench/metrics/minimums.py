"""Below a metric's minimum sample size: the note its metric row carries, or the score CLI's error.

Each metric module holds its own ``MIN_IMAGES``; this module only words what happens below it.
"""

from __future__ import annotations

from t2ibench.errors import UserError


def too_few(n: int, minimum: int, what: str = "images") -> str | None:
    """``"too few images (1 < 2)"`` when ``n < minimum``, else None (the note of a NaN metric row)."""
    return f"too few {what} ({n} < {minimum})" if n < minimum else None


def require(problems: list[str], where: str, metric: str, n: int, minimum: int) -> None:
    """Append the score CLI's line for ``where`` (a folder) when it holds fewer than ``minimum`` images."""
    if n < minimum:
        problems.append(f"{where}: {metric} needs at least {minimum} images, found {n}")


def raise_all(problems: list[str]) -> None:
    """One UserError listing every distinct problem, one line each (nothing when there is none)."""
    problems = list(dict.fromkeys(problems))
    if problems:
        raise UserError(problems[0], problems=problems)
