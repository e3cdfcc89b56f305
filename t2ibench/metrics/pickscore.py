"""PickScore (Kirstain et al. 2023): the CLIP-H of ``yuvalkirstain/PickScore_v1``, fine-tuned on Pick-a-Pic.

The score is its model card's: ``logit_scale.exp() * cos(image embedding, text embedding)`` (about 18–23
for real images), per image against its prompt. The model is a transformers ``CLIPModel`` read from a
Hugging Face folder. Images go through ``CLIPImageProcessor``'s defaults, which are the processor config
of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` that the model card loads (short side to 224 bicubic, centre
crop, CLIP mean/std); prompts through that repo's ``CLIPTokenizer`` (77 tokens, truncated) when it is in
the cache, else open_clip's tokenizer, which has the same BPE vocabulary and special tokens.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from t2ibench.metrics.preference import WeightsOptions, network_checks
from t2ibench.metrics.registry import METRICS, MetricSpec

REPO = "yuvalkirstain/PickScore_v1"
PROCESSOR_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
CONTEXT = 77


def find_weights(explicit: str | None = None) -> Path:
    from t2ibench.metrics.preference import find_folder

    return find_folder("PickScore", REPO, explicit)


def clip_h_config(kind: str):
    """The CLIP-H/14 config of PickScore_v1 (``full``) or a narrow one of the same family (``tiny``)."""
    from transformers import CLIPConfig

    if kind == "tiny":
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      patch_size=32)
        proj = 32
    else:
        text = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
        vision = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                      patch_size=14)
        proj = 1024
    text.update(vocab_size=49408, max_position_embeddings=CONTEXT, hidden_act="gelu", bos_token_id=49406,
                eos_token_id=49407, pad_token_id=1)
    vision.update(image_size=224, hidden_act="gelu")
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)


@functools.lru_cache(maxsize=2)
def _model(kind: str | None, path: Path | None):
    from transformers import CLIPModel

    from t2ibench.metrics.preference import seeded

    if path is None:
        return seeded(lambda: CLIPModel(clip_h_config(kind))).eval()
    try:
        return CLIPModel.from_pretrained(str(path), local_files_only=True).eval()
    except (OSError, ValueError) as e:
        from t2ibench.errors import UserError

        raise UserError(f"PickScore: cannot load a CLIPModel from {path}: {str(e).splitlines()[0]}") from None


@functools.lru_cache(maxsize=2)
def _tokenizer(path: Path | None):
    """prompts → (input_ids, attention_mask): the CLIP-H CLIPTokenizer when found, else open_clip's."""
    for source in ([str(path)] if path is not None else []) + [PROCESSOR_REPO]:
        try:
            from transformers import CLIPTokenizer

            tok = CLIPTokenizer.from_pretrained(source, local_files_only=True)
        except Exception:  # noqa: BLE001 - not in that folder / not cached
            continue
        if tok.vocab_size != 49408:  # transformers builds an empty tokenizer when the files are missing
            continue

        def hf(prompts: list[str], tok=tok):
            enc = tok(prompts, padding=True, truncation=True, max_length=CONTEXT, return_tensors="pt")
            return enc["input_ids"], enc["attention_mask"]

        return hf
    import open_clip

    simple = open_clip.get_tokenizer("ViT-H-14")

    def oc(prompts: list[str]):
        ids = simple(prompts)  # sot … eot, zero padding; the causal mask keeps padding out of the eot token
        return ids, (ids != 0).long()

    return oc


def image_input():
    """PIL → (3, 224, 224) with ``CLIPImageProcessor``'s defaults (= the CLIP-H processor config)."""
    return _ProcessImage()


class _ProcessImage:
    """Picklable (it runs in loader workers)."""

    def __call__(self, img):
        import torch

        from transformers import CLIPImageProcessor

        out = _processor(CLIPImageProcessor)(images=img, return_tensors="pt")["pixel_values"][0]
        return torch.as_tensor(out, dtype=torch.float32)


@functools.lru_cache(maxsize=1)
def _processor(cls):
    return cls()


def load(weights: str | None):
    """(image Extractor, text encoder, logit scale, cache key) of the PickScore model ``weights`` names."""
    import torch
    from torch import nn

    from t2ibench.metrics.networks import Extractor
    from t2ibench.metrics.preference import identity, random_kind

    kind = random_kind(weights)
    path = None if kind else find_weights(weights)
    model = _model(kind, path)
    name = {"tiny": "random:tiny", "full": "random"}.get(kind or "", "PickScore_v1")
    key = f"pickscore:{name}|w={identity(path, kind)}"

    class ImageFeatures(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return _as_tensor(self.model.get_image_features(pixel_values=x))

    image = Extractor(key=key, random_weights=kind is not None, module=ImageFeatures(), preprocess=image_input())
    tokenize = _tokenizer(path)

    @torch.no_grad()
    def encode_text(prompts: list[str]) -> np.ndarray:
        ids, mask = tokenize(prompts)
        out = model.get_text_features(input_ids=ids.to(image.device), attention_mask=mask.to(image.device))
        return _as_tensor(out).float().cpu().numpy()

    return image, encode_text, float(model.logit_scale.detach().exp()), key


def _as_tensor(out):
    """transformers 5 may return a ModelOutput from ``get_*_features``; its pooled projection is the embedding."""
    if hasattr(out, "pooler_output"):
        return out.pooler_output
    return out


def pick_scores(image_emb: np.ndarray, text_emb: np.ndarray, logit_scale: float) -> np.ndarray:
    """``logit_scale.exp() * cos``, row-wise (the model card: scale · text_embs @ image_embs.T, both normalised)."""
    a = np.asarray(image_emb, np.float64)
    b = np.asarray(text_emb, np.float64)
    return logit_scale * (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def score_pickscore(o: WeightsOptions, ctx) -> list:
    from t2ibench.metrics.preference import PerImage, cached_text, run_per_image

    image, encode_text, scale, key = load(o.weights)

    def scores(recs, ctx):
        img = ctx.features(image, [r.path for r in recs])
        text = cached_text(key, [r.prompt for r in recs], encode_text, ctx.cache)
        return pick_scores(img, np.stack([text[r.prompt] for r in recs]), scale)

    return run_per_image("pickscore", PerImage(key, image.random_weights, scores), ctx)


METRICS.add("pickscore", MetricSpec(
    name="pickscore", options=WeightsOptions, runner=score_pickscore, higher_is_better=True, against=False,
    per_image=True, gate=0.2, label="PickScore", summary="PickScore of a folder against its prompts",
    networks=lambda o: network_checks("PickScore", o.weights, lambda: find_weights(o.weights)),
    min_images=1, prompts=True, estimand="the mean PickScore of the config's images over prompts like the suite's",
))
