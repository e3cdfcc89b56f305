"""Score images: a pure function from image records to metric rows, through the metric registry.

Against ``reference``, the reference config gets no FID/KID/CMMD/LPIPS row of its own (it would
be ~0 by construction); it does get ``clip_score`` and ``lpips_diversity`` rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from t2ibench.metrics.registry import METRICS
from t2ibench.metrics.scoring import ImageRecord, MetricResult, ScoringContext

__all__ = ["ImageRecord", "MetricResult", "evaluate"]


def evaluate(metrics: dict[str, Any], images: list[ImageRecord], reference_id: str | None, *,
             device: str = "cpu", cache_dir: Path | None, seed: int = 0,
             progress: Callable[[str, int, int], None] | None = None, batch_size: int = 50,
             num_workers: int | None = None, ci: bool = True) -> list[MetricResult]:
    """Compute each metric for each config of ``images``; rows carry 95% CIs over prompts when ``ci``.

    ``progress(label, done, added)``: ``added`` more images (or LPIPS pairs) to run for a network
    ``label``, and ``done`` of them run, after each batch.
    """
    from t2ibench.metrics.cache import FeatureCache
    from t2ibench.metrics.features import resolve_device

    specs = {name: METRICS.get(name) for name in metrics}
    opts = {name: specs[name].parse_options(o) for name, o in metrics.items()}
    configs: dict[str, list[ImageRecord]] = {}
    for r in images:
        configs.setdefault(r.config_id, []).append(r)
    cache = FeatureCache(cache_dir)
    ctx = ScoringContext(configs, reference_id, resolve_device(device), cache, seed, progress,
                         batch_size, num_workers, ci)
    try:
        return [row for name, o in opts.items() for row in specs[name].runner(o, ctx)]
    finally:
        cache.close()
