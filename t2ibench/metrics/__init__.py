"""Quality metrics: FID, KID, CMMD, CLIP score and LPIPS, streaming and cached.

Each metric is declared once in :data:`t2ibench.metrics.registry.METRICS`. Heavy modules
(torch, open_clip, lpips) load on first use, so importing ``t2ibench.metrics`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "frechet_distance": "t2ibench.metrics.fid",
    "FID": "t2ibench.metrics.fid",
    "KID": "t2ibench.metrics.kid",
    "CMMD": "t2ibench.metrics.cmmd",
    "clip_score": "t2ibench.metrics.clipscore",
    "lpips": "t2ibench.metrics.perceptual",
    "METRICS": "t2ibench.metrics.registry",
}

__all__ = ["HIGHER_IS_BETTER", "METRIC_OPTIONS", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "HIGHER_IS_BETTER":  # every results column a metric writes → its direction
        from t2ibench.metrics.registry import higher_is_better

        return higher_is_better()
    if name == "METRIC_OPTIONS":  # metric name → its options model
        from t2ibench.metrics.registry import METRICS

        return {n: spec.options for n, spec in METRICS.items()}
    raise AttributeError(f"module 't2ibench.metrics' has no attribute '{name}'")
