"""HPSv2.1 (Wu et al. 2023, Human Preference Score v2): open_clip ViT-H-14 fine-tuned on human preferences.

The score is HPSv2's: the dot product of the L2-normalised image and text embeddings (a cosine, about
0.2–0.35 for real images), per image against its prompt. Weights: ``HPS_v2.1_compressed.pt`` of
``xswu/HPSv2``, a dict whose ``state_dict`` holds open_clip CLIP keys. Images go through open_clip's
evaluation transform (bicubic resize of the short side to 224, centre crop); HPSv2 runs in fp16 autocast
on CUDA, t2ibench in float32.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from t2ibench.metrics.preference import WeightsOptions, network_checks
from t2ibench.metrics.registry import METRICS, MetricSpec

FILE = "HPS_v2.1_compressed.pt"
REPO = "xswu/HPSv2"
ARCH = "ViT-H-14"


def find_weights(explicit: str | None = None) -> Path:
    from t2ibench.metrics.preference import find_file

    return find_file("HPSv2.1", (FILE,), REPO, explicit, f"https://huggingface.co/{REPO} ({FILE})")


@functools.lru_cache(maxsize=2)
def _model(kind: str | None, path: Path | None):
    import open_clip

    from t2ibench.metrics import weights as w
    from t2ibench.metrics.preference import load_matching, seeded, tiny_open_clip

    if kind == "tiny":
        return tiny_open_clip()
    model = seeded(lambda: open_clip.create_model(ARCH, pretrained=None))
    if path is not None:
        state = w.load_state_dict_file(path)
        state = state.get("state_dict", state)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        load_matching(model, state, f"HPSv2.1 weights {path}", ignore=("attn_mask",))
    return model.eval()


@functools.lru_cache(maxsize=1)
def _tokenizer():
    import open_clip

    return open_clip.get_tokenizer(ARCH)


def load(weights: str | None):
    """(image Extractor, text encoder, cache key) of the HPSv2.1 model that ``weights`` names."""
    import torch

    from t2ibench.metrics.networks import Extractor, _ClipImage
    from t2ibench.metrics.preference import clip_transform, identity, random_kind

    kind = random_kind(weights)
    path = None if kind else find_weights(weights)
    model = _model(kind, path)
    name = {"tiny": "random:tiny", "full": "random"}.get(kind or "", ARCH)
    key = f"hpsv2:{name}|w={identity(path, kind)}"
    image = Extractor(key=key, random_weights=kind is not None, module=_ClipImage(model),
                      preprocess=clip_transform(224))
    tokenizer = _tokenizer()

    @torch.no_grad()
    def encode_text(prompts: list[str]) -> np.ndarray:
        return model.encode_text(tokenizer(prompts).to(image.device)).float().cpu().numpy()

    return image, encode_text, key


def hps_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Row-wise cosine of the two embeddings (HPSv2: normalised image features · normalised text features)."""
    a = np.asarray(image_emb, np.float64)
    b = np.asarray(text_emb, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def score_hpsv2(o: WeightsOptions, ctx) -> list:
    from t2ibench.metrics.preference import PerImage, cached_text, run_per_image

    image, encode_text, key = load(o.weights)

    def scores(recs, ctx):
        img = ctx.features(image, [r.path for r in recs])
        text = cached_text(key, [r.prompt for r in recs], encode_text, ctx.cache)
        return hps_scores(img, np.stack([text[r.prompt] for r in recs]))

    return run_per_image("hpsv2", PerImage(key, image.random_weights, scores), ctx)


METRICS.add("hpsv2", MetricSpec(
    name="hpsv2", options=WeightsOptions, runner=score_hpsv2, higher_is_better=True, against=False,
    per_image=True, gate=0.005, label="HPSv2.1",
    summary="HPSv2.1 human-preference score of a folder against its prompts",
    networks=lambda o: network_checks("HPSv2.1", o.weights, lambda: find_weights(o.weights)),
    min_images=1, prompts=True, estimand="the mean HPSv2.1 score of the config's images over prompts like the suite's",
))
