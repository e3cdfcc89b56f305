"""How reports name and orient a results column: from the metric registry, else the column's own name."""

from __future__ import annotations


def label(column: str) -> str:
    """The display label of a column (``fid`` → ``FID``); unregistered columns keep their name."""
    from t2ibench.metrics.registry import column as registered

    c = registered(column)
    return c.label if c is not None else column


def higher_is_better(column: str) -> bool:
    """A metric column's direction from its registration (True for unregistered columns)."""
    from t2ibench.metrics.registry import column as registered

    c = registered(column)
    return c.higher_is_better if c is not None else True
