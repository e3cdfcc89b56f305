"""ImageReward v1.0 (Xu et al. 2023): BLIP's ViT-L/16 image encoder, a BERT-base text encoder that
cross-attends to the image tokens, and an MLP on the text [CLS] output. The score is ImageReward's
normalised reward, ``(r − 0.16717…) / 1.03334…`` (its published mean and std), per image against its prompt.

Built here from timm's ViT and a compact BERT with cross-attention whose parameter names are BLIP's, so
``ImageReward.pt`` (``THUDM/ImageReward``) loads as it is: ``blip.visual_encoder.*``, ``blip.text_encoder.*``
and ``mlp.layers.*`` (its ``vision_proj``/``text_proj`` are unused). Prompts are tokenised with
``bert-base-uncased`` (padded to 35 tokens, truncated), read from the Hugging Face cache or a ``vocab.txt``
beside the weights. The score depends on image and prompt together, so the feature cache holds the score
of each (image, prompt) pair.
"""

from __future__ import annotations

import functools
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t2ibench.metrics.preference import WeightsOptions, network_checks
from t2ibench.metrics.registry import METRICS, MetricSpec

FILE = "ImageReward.pt"
REPO = "THUDM/ImageReward"
TOKENIZER_REPOS = ("bert-base-uncased", "google-bert/bert-base-uncased")
MEAN, STD = 0.16717362830052426, 1.0333394966054072
MAX_LENGTH = 35


@dataclass(frozen=True)
class Config:
    """BLIP-large's vision width/depth/heads, then BERT-base (``med_config.json``: vocab 30524 with [DEC], [ENC])."""

    vision_width: int = 1024
    vision_depth: int = 24
    vision_heads: int = 16
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    vocab: int = 30524
    max_positions: int = 512
    eps: float = 1e-12


TINY = Config(vision_width=128, vision_depth=2, vision_heads=2, hidden=128, layers=2, heads=2, intermediate=256)
HEAD_DIM = 64  # BLIP's ViT-L (1024/16) and BERT-base (768/12) both use 64-wide heads


def config_of(state: dict) -> Config:
    """The sizes of a checkpoint, read from its shapes (heads: width / 64, as in BLIP and BERT)."""
    def count(prefix: str) -> int:
        return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})

    vision = state["blip.visual_encoder.pos_embed"].shape[-1]
    words = state["blip.text_encoder.embeddings.word_embeddings.weight"]
    return Config(vision_width=vision, vision_depth=count("blip.visual_encoder.blocks."),
                  vision_heads=max(1, vision // HEAD_DIM), hidden=words.shape[1],
                  layers=count("blip.text_encoder.encoder.layer."), heads=max(1, words.shape[1] // HEAD_DIM),
                  intermediate=state["blip.text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
                  vocab=words.shape[0],
                  max_positions=state["blip.text_encoder.embeddings.position_embeddings.weight"].shape[0])


def find_weights(explicit: str | None = None) -> Path:
    from t2ibench.metrics.preference import find_file

    return find_file("ImageReward", (FILE,), REPO, explicit, f"https://huggingface.co/{REPO} ({FILE})")


def build(cfg: Config):
    """The ImageReward network with the original state-dict names (random weights)."""
    import torch
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    from t2ibench.metrics.aesthetic import mlp

    def linear(i: int, o: int) -> nn.Linear:
        return nn.Linear(i, o)

    class SelfAttn(nn.Module):
        def __init__(self, kv_width: int):
            super().__init__()
            self.query, self.key, self.value = linear(cfg.hidden, cfg.hidden), linear(kv_width, cfg.hidden), \
                linear(kv_width, cfg.hidden)

        def forward(self, x, kv, mask):
            b, n, _ = x.shape
            h, d = cfg.heads, cfg.hidden // cfg.heads

            def split(t):
                return t.view(b, -1, h, d).transpose(1, 2)

            q, k, v = split(self.query(x)), split(self.key(kv)), split(self.value(kv))
            scores = q @ k.transpose(-1, -2) / math.sqrt(d)
            if mask is not None:
                scores = scores + mask
            return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, cfg.hidden)

    class Residual(nn.Module):  # BERT's SelfOutput / Output: dense, then LayerNorm(x + input)
        def __init__(self, width: int):
            super().__init__()
            self.dense = linear(width, cfg.hidden)
            self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

        def forward(self, x, residual):
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Module):
        def __init__(self, kv_width: int):
            super().__init__()
            self.self = SelfAttn(kv_width)
            self.output = Residual(cfg.hidden)

        def forward(self, x, kv, mask):
            return self.output(self.self(x, kv, mask), x)

    class Intermediate(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = linear(cfg.hidden, cfg.intermediate)

        def forward(self, x):
            return nn.functional.gelu(self.dense(x))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention(cfg.hidden)
            self.crossattention = Attention(cfg.vision_width)
            self.intermediate = Intermediate()
            self.output = Residual(cfg.intermediate)

        def forward(self, x, mask, image):
            x = self.attention(x, x, mask)
            x = self.crossattention(x, image, None)  # every image token is attended (BLIP's image_atts = 1)
            return self.output(self.intermediate(x), x)

    class Embeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = nn.Embedding(cfg.vocab, cfg.hidden, padding_idx=0)
            self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
            self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

        def forward(self, ids):
            pos = torch.arange(ids.shape[1], device=ids.device)
            return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos)[None])

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(cfg.layers))

    class TextEncoder(nn.Module):
        """BLIP's ``BertModel(add_pooling_layer=False)`` in its default multimodal mode: bidirectional
        self-attention over the prompt (padding masked with −10000), cross-attention to the image."""

        def __init__(self):
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def forward(self, ids, attention_mask, image):
            x = self.embeddings(ids)
            mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.encoder.layer:
                x = layer(x, mask, image)
            return x

    class ImageReward(nn.Module):
        def __init__(self):
            super().__init__()
            self.blip = nn.Module()
            self.blip.visual_encoder = VisionTransformer(
                img_size=224, patch_size=16, embed_dim=cfg.vision_width, depth=cfg.vision_depth,
                num_heads=cfg.vision_heads, mlp_ratio=4, qkv_bias=True, num_classes=0, global_pool="")
            self.blip.text_encoder = TextEncoder()
            self.mlp = mlp(cfg.hidden)

        def forward(self, images, ids, attention_mask):
            image = self.blip.visual_encoder.forward_features(images)
            text = self.blip.text_encoder(ids, attention_mask, image)
            reward = self.mlp(text[:, 0].float())
            return ((reward - MEAN) / STD)[:, 0]

    return ImageReward()


@functools.lru_cache(maxsize=2)
def _model(kind: str | None, path: Path | None):
    from t2ibench.errors import UserError
    from t2ibench.metrics import weights as w
    from t2ibench.metrics.preference import load_matching, seeded

    if path is None:
        return seeded(lambda: build(TINY if kind == "tiny" else Config())).eval()
    what = f"ImageReward weights {path}"
    state = w.load_state_dict_file(path)
    try:
        cfg = config_of(state)
    except (KeyError, AttributeError, IndexError):
        raise UserError(f"{what}: not an ImageReward checkpoint (no blip.visual_encoder / blip.text_encoder "
                        "tensors)") from None
    model = seeded(lambda: build(cfg))
    load_matching(model, state, what)
    return model.eval()


def _vocab_file(path: Path | None, random: bool) -> Path:
    """bert-base-uncased's vocab.txt: beside the weights, in the HF cache, or (random weights only) a
    character-level stand-in with BERT's special-token ids."""
    from t2ibench.errors import UserError
    from t2ibench.metrics.preference import _hf_cached

    if path is not None and (path.parent / "vocab.txt").is_file():
        return path.parent / "vocab.txt"
    for repo in TOKENIZER_REPOS:
        hit = _hf_cached(repo, "vocab.txt")
        if hit is not None:
            return hit
    if not random:
        raise UserError("ImageReward's tokenizer 'vocab.txt' of bert-base-uncased not found; get it with: "
                        "huggingface-cli download bert-base-uncased vocab.txt (or put it beside ImageReward.pt)")
    return _stand_in_vocab()


@functools.lru_cache(maxsize=1)
def _stand_in_vocab() -> Path:
    import string

    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens += list(chars) + ["##" + c for c in chars]
    f = Path(tempfile.mkdtemp(prefix="t2ibench-vocab-")) / "vocab.txt"
    f.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return f


@functools.lru_cache(maxsize=4)
def _tokenizer(vocab: Path):
    from transformers import BertTokenizer

    return BertTokenizer(vocab_file=str(vocab), do_lower_case=True)


def load(weights: str | None):
    """(key, random, score(images, prompts) → normalised rewards) of the ImageReward model ``weights`` names."""
    import torch

    from t2ibench.metrics.preference import identity, random_kind

    kind = random_kind(weights)
    path = None if kind else find_weights(weights)
    model = _model(kind, path)
    vocab = _vocab_file(path, kind is not None)
    tokenizer = _tokenizer(vocab)
    from t2ibench.metrics import weights as w

    name = {"tiny": "random:tiny", "full": "random"}.get(kind or "", "v1.0")
    key = f"image_reward:{name}|w={identity(path, kind)}|vocab={w.file_identity(vocab)}"

    @torch.no_grad()
    def score(images: torch.Tensor, prompts: list[str]) -> np.ndarray:
        device = next(model.parameters()).device
        enc = tokenizer(prompts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        out = model(images.to(device), enc["input_ids"].to(device), enc["attention_mask"].to(device))
        return out.double().cpu().numpy()

    return key, kind is not None, model, score


def score_image_reward(o: WeightsOptions, ctx) -> list:
    from t2ibench.metrics.preference import PerImage, cached_pairs, clip_transform, run_per_image

    key, random, model, score = load(o.weights)
    model.to(ctx.device)
    preprocess = clip_transform(224)  # ImageReward's _transform(224): bicubic short side, centre crop, CLIP mean/std

    def scores(recs, ctx):
        return cached_pairs(key, recs, preprocess, score, ctx)

    return run_per_image("image_reward", PerImage(key, random, scores), ctx)


def _networks(o: WeightsOptions) -> list:
    from t2ibench.metrics.preference import random_kind

    checks = network_checks("ImageReward", o.weights, lambda: find_weights(o.weights))
    if checks and random_kind(o.weights) is None:
        checks += network_checks("ImageReward tokenizer", o.weights,
                                 lambda: _vocab_file(None, random=False))
    return checks


METRICS.add("image_reward", MetricSpec(
    name="image_reward", options=WeightsOptions, runner=score_image_reward, higher_is_better=True, against=False,
    per_image=True, gate=0.1, label="ImageReward", summary="ImageReward of a folder against its prompts",
    networks=_networks, min_images=1, prompts=True,
    estimand="the mean ImageReward of the config's images over prompts like the suite's",
))
