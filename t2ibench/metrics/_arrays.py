"""Turning whatever ``update`` receives into a float64 feature matrix, and the feature-keeping base."""

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


class FeatureSet:
    """Base of the streaming metrics that must keep every feature (KID, CMMD): update/reset/features.

    ``reference`` is another metric of the same kind or an ``(N, d)`` array.
    """

    higher_is_better: bool  # set by each metric's registration from its MetricSpec

    def __init__(self, extractor: Featurizer | None = None, reference: Any = None):
        self.extractor, self.reference = extractor, reference
        self.reset()

    def reset(self) -> None:
        self._chunks: list[np.ndarray] = []

    def update(self, x: Any) -> None:
        self._chunks.append(as_features(x, self.extractor))

    def features(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros((0, 0))

    def reference_features(self, reference: Any = None) -> np.ndarray:
        ref = reference if reference is not None else self.reference
        if ref is None:
            name = type(self).__name__
            raise ValueError(f"{name}.compute needs a reference: {name}(reference=…) or compute(reference)")
        return ref.features() if isinstance(ref, FeatureSet) else np.asarray(ref, np.float64)
