"""CMMD (Jayasumana et al. 2024): biased RBF-kernel MMD on L2-normalised CLIP embeddings."""

from __future__ import annotations


import numpy as np

from t2ibench.metrics._arrays import FeatureSet
from t2ibench.metrics.kernels import SCALE, SIGMA, l2_normalise, mean_rbf, rbf_kernel  # noqa: F401


def cmmd(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA) -> float:
    """1000 · (E k(x,x′) + E k(y,y′) − 2 E k(x,y)) on normalised embeddings, float64."""
    if min(len(x), len(y)) < MIN_IMAGES:
        raise ValueError(f"CMMD needs at least {MIN_IMAGES} images on each side, got {len(x)} and {len(y)}")
    x, y = l2_normalise(np.asarray(x, np.float64)), l2_normalise(np.asarray(y, np.float64))
    return SCALE * (mean_rbf(x, x, sigma) + mean_rbf(y, y, sigma) - 2 * mean_rbf(x, y, sigma))


class CMMD(FeatureSet):
    """Streaming CMMD: keeps the embeddings, computes against a reference."""

    def compute(self, reference: "CMMD | np.ndarray | None" = None) -> float:
        return cmmd(self.features(), self.reference_features(reference))


# --- registration ------------------------------------------------------------------------------

from pydantic import Field, field_validator  # noqa: E402

from t2ibench.base import Frozen  # noqa: E402
from t2ibench.metrics.registry import METRICS, MetricSpec, NetworkCheck, no_npz  # noqa: E402

MIN_IMAGES = 2  # per side: with one image a set has no spread, and the biased MMD is meaningless


class CMMDOptions(Frozen):
    """``cmmd: {against: reference, model: ViT-L-14-336}``; ``model`` is open_clip or ``random:<arch>``."""

    against: str = Field("reference", description="reference (the suite's reference config) or a folder "
                                                  "of images")
    model: str = Field("ViT-L-14-336", description="open_clip architecture, or random:<arch> (random weights, "
                                                   "for tests)")
    pretrained: str = Field("openai", description="open_clip pretrained tag of the weights")

    _against = field_validator("against")(no_npz)


def score_cmmd(o: CMMDOptions, ctx) -> list:
    """CMMD per config with a jackknife CI (``bootstrap.set_ci``) covering CMMD at this set size."""
    from t2ibench.metrics import set_stats
    from t2ibench.metrics.networks import load_clip
    from t2ibench.metrics.set_scoring import score_set

    return score_set("cmmd", load_clip(o.model, o.pretrained).image, o.against, ctx,
                     stat_of=lambda x, ref: set_stats.cmmd_stat(x, ref.features), min_images=MIN_IMAGES,
                     floor=0.0, prepare=l2_normalise, pairwise=True)


def _cmmd_networks(o: CMMDOptions) -> list[NetworkCheck]:
    from t2ibench.metrics.clipscore import clip_network

    return clip_network(o.model, o.pretrained)


METRICS.add("cmmd", MetricSpec(
    name="cmmd", options=CMMDOptions, runner=score_cmmd, higher_is_better=False, against=True, per_image=False,
    gate="5%", label="CMMD", summary="CLIP-embedding MMD between two folders", networks=_cmmd_networks,
    min_images=MIN_IMAGES,
    estimand="the expected CMMD at this set size (the biased MMD² shrinks towards its population value as 1/n)",
))
CMMD.higher_is_better = METRICS.get("cmmd").higher_is_better
