"""CLIP score: 100 · cos(image embedding, text embedding) with open_clip.

Not clamped at 0 (torchmetrics' ``CLIPScore`` reports max(100·cos, 0); MLPerf SDXL, whose model
choice we follow, reports the raw value, and a clamp would hide how bad a bad image is).
Prompts longer than the context are truncated by open_clip's tokenizer, which keeps the end token
in the last slot (torchmetrics #2883 drops it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from pydantic import Field

from t2ibench.base import Frozen
from t2ibench.metrics.registry import METRICS, MetricSpec, NetworkCheck

if TYPE_CHECKING:
    from PIL import Image

    from t2ibench.metrics.cache import FeatureCache


def cosine_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Row-wise 100 · cos in float64."""
    a = np.asarray(image_emb, np.float64)
    b = np.asarray(text_emb, np.float64)
    return 100 * (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def clip_score(images: Sequence[str | Path | "Image.Image"], prompts: Sequence[str], model: str = "ViT-B-32",
               pretrained: str = "openai", device: str = "cpu", cache: "FeatureCache | None" = None,
               batch_size: int = 32, num_workers: int | None = None) -> np.ndarray:
    """Per-image CLIP scores of ``images`` against their ``prompts`` (same length)."""
    from PIL import Image

    from t2ibench.metrics.features import extract
    from t2ibench.metrics.networks import load_clip

    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    clip = load_clip(model, pretrained)
    clip.image.to(device)
    if all(isinstance(x, Image.Image) for x in images):
        img = clip.image.features(images)
    else:
        img = extract([Path(p) for p in images], clip.image, cache, batch_size=batch_size, num_workers=num_workers)
    uniq = list(dict.fromkeys(prompts))
    txt = dict(zip(uniq, clip.encode_text(uniq)))
    return cosine_scores(img, np.stack([txt[p] for p in prompts]))




# --- registration ------------------------------------------------------------------------------

class ClipScoreOptions(Frozen):
    """``clip_score: {model: ViT-B-32, pretrained: openai}``."""

    model: str = Field("ViT-B-32", description="open_clip architecture, or random:<arch> (random weights, for tests)")
    pretrained: str = Field("openai", description="open_clip pretrained tag of the weights")


def score_clip(o: ClipScoreOptions, ctx) -> list:
    """Mean CLIP score per config, with a CI over prompts and per-image values for paired compare."""
    from t2ibench.metrics import bootstrap as bs
    from t2ibench.metrics.networks import load_clip
    from t2ibench.metrics.scoring import per_image, result

    clip = load_clip(o.model, o.pretrained)
    clip.image.to(ctx.device)
    prompts = list(dict.fromkeys(r.prompt for recs in ctx.configs.values() for r in recs))
    text = dict(zip(prompts, clip.encode_text(prompts)))
    out = []
    for cfg, recs in ctx.configs.items():
        img = ctx.features(clip.image, [r.path for r in recs])
        s = cosine_scores(img, np.stack([text[r.prompt] for r in recs]))
        ci = bs.mean_ci(s, [r.prompt_id for r in recs], seed=ctx.seed) if ctx.ci else None
        out.append(result(cfg, "clip_score", s.mean(), ci, clip.image.random_weights, len(s),
                          std=float(s.std()), per_image=per_image(recs, s)))
    return out


def clip_network(model: str, pretrained: str) -> list[NetworkCheck]:
    """The open_clip network of the options: its name check, and the weights doctor looks for."""
    from t2ibench.metrics.weights import check_open_clip, random_weights, resolve_open_clip

    if model.startswith("random:"):
        return [NetworkCheck(f"CLIP {model}", random_weights, lambda: check_open_clip(model), option="model")]
    return [NetworkCheck(f"CLIP {model}/{pretrained}", lambda: str(resolve_open_clip(model, pretrained)[0]),
                         lambda: check_open_clip(model, pretrained), option="model")]


METRICS.add("clip_score", MetricSpec(
    name="clip_score", options=ClipScoreOptions, runner=score_clip, higher_is_better=True, against=False,
    per_image=True, gate=0.5, label="CLIP score", summary="CLIP score of a folder against its prompts",
    networks=lambda o: clip_network(o.model, o.pretrained), min_images=1, prompts=True, cli_aliases=("clip",),
    estimand="the mean CLIP score of the config's images over prompts like the suite's",
))
clip_score.higher_is_better = METRICS.get("clip_score").higher_is_better  # type: ignore[attr-defined]
