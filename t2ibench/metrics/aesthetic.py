"""LAION aesthetic predictor v2 (improved-aesthetic-predictor): an MLP on L2-normalised CLIP ViT-L/14 image
embeddings, trained on SAC, LAION-Logos and AVA ratings. Scores are on AVA's 1–10 scale (not clipped);
no prompt is needed.

Weights: the head ``sac+logos+ava1-l14-linearMSE.pth`` (a state dict of ``layers.{0,2,4,6,7}``) with
``weights:``; the backbone is open_clip's ``ViT-L-14``/``openai`` (OpenAI's CLIP ViT-L/14), found like
CLIP score's. ``random``/``random:tiny`` make both random.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from t2ibench.metrics.preference import WeightsOptions, network_checks
from t2ibench.metrics.registry import METRICS, MetricSpec

FILE = "sac+logos+ava1-l14-linearMSE.pth"
URL = "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/" + FILE.replace("+", "%2B")
REPO = "camenduru/improved-aesthetic-predictor"  # a Hugging Face mirror of the head, looked up in the cache
ARCH, PRETRAINED = "ViT-L-14", "openai"


def find_weights(explicit: str | None = None) -> Path:
    from t2ibench.metrics.preference import find_file

    return find_file("aesthetic predictor", (FILE,), REPO, explicit, URL)


def mlp(dim: int):
    """The predictor's head: Linear(d,1024), Dropout, Linear(1024,128), Dropout, Linear(128,64), Dropout,
    Linear(64,16), Linear(16,1); no activations (as trained)."""
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

        def forward(self, x):
            return self.layers(x)

    return MLP()


@functools.lru_cache(maxsize=2)
def _head(kind: str | None, path: Path | None, dim: int):
    from t2ibench.metrics import weights as w
    from t2ibench.metrics.preference import load_matching, seeded

    head = seeded(lambda: mlp(dim))
    if path is not None:
        load_matching(head, w.load_state_dict_file(path), f"aesthetic predictor weights {path}")
    return head.eval()


def load(weights: str | None):
    """An Extractor whose feature is the aesthetic score itself (so the feature cache holds scores)."""
    from torch import nn

    from t2ibench.metrics.networks import Extractor, _ClipImage, load_clip
    from t2ibench.metrics.preference import clip_transform, identity, random_kind

    kind = random_kind(weights)
    path = None if kind else find_weights(weights)
    if kind == "tiny":
        clip_key, backbone = "random:tiny", _ClipImage(_tiny_clip())
    else:
        clip = load_clip(("random:" if kind else "") + ARCH, PRETRAINED)
        clip_key, backbone = clip.image.key, clip.image.module
    dim = 32 if kind == "tiny" else 768
    head = _head(kind, path, dim)

    class Aesthetic(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, x):
            emb = self.backbone(x).float()
            return self.head(emb / emb.norm(dim=-1, keepdim=True))

    key = f"aesthetic:{clip_key}|head={identity(path, kind)}"
    return Extractor(key=key, random_weights=kind is not None, module=Aesthetic().eval(),
                     preprocess=clip_transform(224))


@functools.lru_cache(maxsize=1)
def _tiny_clip():
    from t2ibench.metrics.preference import tiny_open_clip

    return tiny_open_clip()


def score_aesthetic(o: WeightsOptions, ctx) -> list:
    from t2ibench.metrics.preference import PerImage, run_per_image

    ext = load(o.weights)

    def scores(recs, ctx):
        return ctx.features(ext, [r.path for r in recs])[:, 0].astype(np.float64)

    return run_per_image("aesthetic", PerImage(ext.key, ext.random_weights, scores), ctx)


def _networks(o: WeightsOptions) -> list:
    from t2ibench.metrics.clipscore import clip_network

    if o.weights is not None and o.weights.startswith("random"):
        return []
    return network_checks("aesthetic predictor", o.weights, lambda: find_weights(o.weights)) + \
        clip_network(ARCH, PRETRAINED)


METRICS.add("aesthetic", MetricSpec(
    name="aesthetic", options=WeightsOptions, runner=score_aesthetic, higher_is_better=True, against=False,
    per_image=True, gate=0.1, label="aesthetic score", summary="LAION aesthetic score (1-10) of a folder",
    networks=_networks, min_images=1,
    estimand="the mean aesthetic score of the config's images over prompts like the suite's",
))
