"""CLIP score: 100 · cos(image embedding, text embedding) with open_clip.

Not clamped at 0 (torchmetrics' ``CLIPScore`` reports max(100·cos, 0); MLPerf SDXL, whose model
choice we follow, reports the raw value, and a clamp would hide how bad a bad image is).
Prompts longer than the context are truncated by open_clip's tokenizer, which keeps the end token
in the last slot (torchmetrics #2883 drops it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from t2ibench.metrics.cache import FeatureCache
from t2ibench.metrics.features import extract
from t2ibench.metrics.networks import load_clip

MIN_IMAGES = 1  # a per-image score


def cosine_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Row-wise 100 · cos in float64."""
    a = np.asarray(image_emb, np.float64)
    b = np.asarray(text_emb, np.float64)
    return 100 * (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def clip_score(images: Sequence[str | Path | Image.Image], prompts: Sequence[str], model: str = "ViT-B-32",
               pretrained: str = "openai", device: str = "cpu", cache: FeatureCache | None = None,
               batch_size: int = 32, num_workers: int | None = None) -> np.ndarray:
    """Per-image CLIP scores of ``images`` against their ``prompts`` (same length)."""
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


clip_score.higher_is_better = True  # type: ignore[attr-defined]
