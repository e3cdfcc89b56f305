"""What a metric runner works with: the images of each config, the reference, and shared helpers.

One scoring path serves both uses: ``t2ibench score`` wraps plain folders into
:class:`ImageRecord` lists, a run wraps its stored images, and both call
:func:`t2ibench.metrics.evaluate.evaluate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from t2ibench.errors import UserError

RANDOM_NOTE = "not meaningful (random weights)"


@dataclass(frozen=True)
class ImageRecord:
    config_id: str
    prompt_id: str
    prompt: str
    seed: int
    path: Path


@dataclass(frozen=True)
class MetricResult:
    config_id: str
    metric: str
    value: float
    lo: float | None
    hi: float | None
    random_weights: bool
    n: int
    extra: dict = field(default_factory=dict)


@dataclass
class ScoringContext:
    """The images by config, the reference config's id (or None), and how to extract features."""

    configs: dict[str, list[ImageRecord]]
    reference_id: str | None
    device: str
    cache: Any  # FeatureCache
    seed: int = 0
    progress: Callable[[str, int, int], None] | None = None  # (label, images done, images added): per batch
    batch_size: int = 50
    num_workers: int | None = None
    ci: bool = True  # compute confidence intervals (``score`` on folders skips them unless asked)

    def candidates(self, against: str) -> list[str]:
        """The configs to score; against the reference, the reference itself is not scored."""
        return [c for c in self.configs if not (against == "reference" and c == self.reference_id)]

    def reference_records(self, metric: str) -> list[ImageRecord]:
        if self.reference_id is None:
            raise UserError(f"metric {metric}: 'against: reference' but the suite has no reference config")
        return self.configs.get(self.reference_id, [])  # none when all its cells failed: rows say so

    def reference_paths(self, metric: str, against: str) -> list[Path]:
        """The reference images: the reference config's, or a folder's."""
        if against == "reference":
            return [r.path for r in self.reference_records(metric)]
        from t2ibench.metrics.images import list_images

        return list_images(against)

    def features(self, extractor: Any, paths: list[Path]) -> np.ndarray:
        """Features of image files (float64), through the feature cache."""
        from t2ibench.metrics.features import extract

        return extract(paths, extractor.to(self.device), self.cache, batch_size=self.batch_size,
                       num_workers=self.num_workers, progress=self.progress).astype(np.float64)


def _ci(lo_hi: tuple[float, float] | None) -> tuple[float | None, float | None]:
    if lo_hi is None:
        return None, None
    lo, hi = lo_hi
    return (None, None) if math.isnan(lo) or math.isnan(hi) else (lo, hi)


def result(config_id: str, metric: str, value: float, ci: tuple[float, float] | None, random: bool, n: int,
           notes: list[str] | None = None, **extra: Any) -> MetricResult:
    """A metric row; random-weight rows carry the "not meaningful" note."""
    notes = ([RANDOM_NOTE] if random else []) + (notes or [])
    if notes:
        extra["notes"] = notes
    return MetricResult(config_id, metric, float(value), *_ci(ci), random_weights=random, n=n, extra=extra)


def too_few(config_id: str, metric: str, n: int, minimum: int, random: bool, side: str = "") -> MetricResult:
    """A row for a set too small to score: NaN, with the reason in its notes."""
    what = f"{side} " if side else ""
    return result(config_id, metric, math.nan, None, random, n,
                  [f"too few {what}images ({n} < {minimum}); not scored"])


def per_image(recs: list[ImageRecord], values: np.ndarray) -> dict[str, float]:
    """``extra['per_image']``: each image's value keyed ``"prompt_id:seed"`` (paired comparisons need them)."""
    return {f"{r.prompt_id}:{r.seed}": float(v) for r, v in zip(recs, values)}
