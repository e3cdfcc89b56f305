"""Quality metrics: FID, KID, CMMD, CLIP score and LPIPS, streaming and cached.

Heavy modules (torch, open_clip, lpips) load on first use of an attribute, so importing
``t2ibench.metrics`` or ``t2ibench.metrics.options`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from t2ibench.metrics.options import HIGHER_IS_BETTER, METRIC_OPTIONS

_LAZY = {
    "frechet_distance": "t2ibench.metrics.fid",
    "FID": "t2ibench.metrics.fid",
    "KID": "t2ibench.metrics.kid",
    "CMMD": "t2ibench.metrics.cmmd",
    "clip_score": "t2ibench.metrics.clipscore",
    "lpips": "t2ibench.metrics.perceptual",
}

__all__ = ["HIGHER_IS_BETTER", "METRIC_OPTIONS", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 't2ibench.metrics' has no attribute '{name}'")
