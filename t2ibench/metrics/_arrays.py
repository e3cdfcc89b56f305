"""Turning whatever ``update`` receives into a float64 feature matrix."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Featurizer(Protocol):
    """Anything that maps a batch of images to an ``(N, d)`` feature array."""

    def features(self, images: Any) -> np.ndarray: ...


def as_features(x: Any, featurizer: Featurizer | None) -> np.ndarray:
    """``(N, d)`` arrays/tensors pass through as features; anything else goes to ``featurizer``."""
    if getattr(x, "ndim", None) == 2:
        if hasattr(x, "detach"):  # torch tensor, imported lazily by the caller
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=np.float64)
    if featurizer is None:
        raise TypeError("got images but this metric has no feature extractor; pass extractor=… "
                        "or update() with an (N, d) feature array")
    return np.asarray(featurizer.features(x), dtype=np.float64)
