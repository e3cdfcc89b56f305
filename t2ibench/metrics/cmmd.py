"""CMMD (Jayasumana et al. 2024): biased RBF-kernel MMD on L2-normalised CLIP embeddings."""

from __future__ import annotations


import numpy as np

from t2ibench.metrics._arrays import FeatureSet

SIGMA = 10.0
SCALE = 1000.0


def l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rbf_kernel(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """k(x, y) = exp(−‖x−y‖² / (2σ²))."""
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.exp(-d2 / (2 * sigma**2))


def mean_rbf(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA, block: int = 2048) -> float:
    """Mean of k over all pairs, diagonal included, in row blocks to bound memory."""
    total = sum(rbf_kernel(x[i:i + block], y, sigma).sum() for i in range(0, len(x), block))
    return float(total / (len(x) * len(y)))


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
    """CMMD per config with a prompt-jackknife CI (paired with the reference config's prompts)."""
    from t2ibench.metrics import bootstrap as bs
    from t2ibench.metrics import set_stats
    from t2ibench.metrics.networks import load_clip
    from t2ibench.metrics.scoring import result, too_few

    ext = load_clip(o.model, o.pretrained).image
    ref_paths = ctx.reference_paths("cmmd", o.against)  # none when every reference cell failed
    if len(ref_paths) < MIN_IMAGES:
        return [too_few(cfg, "cmmd", len(ref_paths), MIN_IMAGES, ext.random_weights, "reference")
                for cfg in ctx.candidates(o.against)]
    y = l2_normalise(ctx.features(ext, ref_paths))
    ref_groups = ctx.reference_groups(o.against)
    out = []
    for cfg in ctx.candidates(o.against):
        recs = ctx.configs[cfg]
        x = l2_normalise(ctx.features(ext, [r.path for r in recs]))
        if min(len(x), len(y)) < MIN_IMAGES:
            side = "reference" if len(y) < MIN_IMAGES else ""
            out.append(too_few(cfg, "cmmd", min(len(x), len(y)), MIN_IMAGES, ext.random_weights, side))
            continue
        stat = set_stats.cmmd_stat(x, y, paired=ref_groups is not None)
        value = stat(np.arange(len(x)), None if ref_groups is None else np.arange(len(y)))
        ci = bs.set_ci(stat, [r.prompt_id for r in recs], ref_groups, seed=ctx.seed, estimate=value,
                       floor=0.0) if ctx.ci else None
        out.append(result(cfg, "cmmd", value, ci, ext.random_weights, len(x), n_ref=len(y)))
    return out


def _cmmd_networks(o: CMMDOptions) -> list[NetworkCheck]:
    from t2ibench.metrics.clipscore import clip_network

    return clip_network(o.model, o.pretrained)


METRICS.add("cmmd", MetricSpec(
    name="cmmd", options=CMMDOptions, runner=score_cmmd, higher_is_better=False, against=True, per_image=False,
    gate="5%", label="CMMD", summary="CLIP-embedding MMD between two folders", networks=_cmmd_networks,
    min_images=MIN_IMAGES,
))
