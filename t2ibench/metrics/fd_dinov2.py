"""FD-DINOv2 (Stein et al. 2023): the Fréchet distance between DINOv2 ViT-L/14 CLS features, as dgm-eval
computes it, on the same scoring path as FID (against the reference config, a folder or an ``.npz``).

Preprocessing is dgm-eval's: RGB, PIL bicubic resize to 224×224 (no crop: the aspect ratio is not kept),
[0,1], ImageNet mean/std. The network is DINOv2's own forward at 224²: its 37×37 position embedding is
resampled bicubically with DINOv2's 0.1 offset and no antialiasing, and the feature is the final-norm CLS
token (1024-d). Weights: the original ``dinov2_vitl14_pretrain.pth`` (where ``torch.hub.load`` puts it),
timm's ``vit_large_patch14_dinov2.lvd142m`` or transformers' ``facebook/dinov2-large``, all read into the
original key names.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from t2ibench.base import Frozen
from t2ibench.metrics.registry import METRICS, MetricSpec
from t2ibench.metrics.options import AT_SIZE

FILE = "dinov2_vitl14_pretrain.pth"
URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/" + FILE
TIMM_REPO, HF_REPO = "timm/vit_large_patch14_dinov2.lvd142m", "facebook/dinov2-large"
SIZE, PATCH = 224, 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATE_OFFSET = 0.1  # DINOv2's historical kludge (facebookresearch/dino#8), kept for parity


def dgm_eval_input(img) -> Any:
    """PIL RGB image → (3, 224, 224): bicubic resize of the whole image to 224², [0,1], ImageNet mean/std."""
    import torch
    from PIL import Image

    arr = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC), np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std).float()


def vit(kind: str | None, width: int = 1024, depth: int = 24):
    """DINOv2 ViT-L/14 (``tiny``: 2 blocks of width 32) built by timm with the 518² position grid of the
    released weights; parameter names are the original checkpoint's (without ``mask_token``). Heads are
    64 wide, as in every DINOv2."""
    from timm.models.vision_transformer import VisionTransformer

    width, depth, heads = (32, 2, 2) if kind == "tiny" else (width, depth, max(1, width // 64))
    return VisionTransformer(img_size=518, patch_size=PATCH, embed_dim=width, depth=depth, num_heads=heads,
                             mlp_ratio=4, qkv_bias=True, init_values=1.0, num_classes=0, global_pool="token")


def interpolate_pos_embed(pos_embed, h0: int, w0: int):
    """DINOv2's ``interpolate_pos_encoding``: bicubic, scale factor (n + 0.1)/M, no antialias."""
    import torch
    import torch.nn.functional as F

    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    if (h0, w0) == (m, m):
        return pos_embed
    cls, grid = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    grid = grid.reshape(1, m, m, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, mode="bicubic", antialias=False,
                         scale_factor=((h0 + INTERPOLATE_OFFSET) / m, (w0 + INTERPOLATE_OFFSET) / m))
    assert grid.shape[-2:] == (h0, w0)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)], dim=1).to(pos_embed.dtype)


def _dino_module(model):
    import torch
    from torch import nn

    class DinoCLS(nn.Module):
        """(B, 3, H, W) normalised → (B, d) final-norm CLS token, DINOv2's ``forward`` (``x_norm_clstoken``)."""

        def __init__(self):
            super().__init__()
            self.vit = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v = self.vit
            b, _, h, w = x.shape
            t = v.patch_embed.proj(x).flatten(2).transpose(1, 2)
            t = torch.cat([v.cls_token.expand(b, -1, -1), t], dim=1)
            t = t + interpolate_pos_embed(v.pos_embed, h // PATCH, w // PATCH)
            for block in v.blocks:
                t = block(t)
            return v.norm(t)[:, 0]

    return DinoCLS().eval()


def from_hf(state: dict) -> dict:
    """transformers ``Dinov2Model`` keys → the original DINOv2 ones (query/key/value fused into ``qkv``).

    Reads both the names of the hub's ``facebook/dinov2-*`` files (``attention.attention.query``,
    ``attention.output.dense``) and those transformers 5 saves (``attention.q_proj``, ``attention.o_proj``).
    """
    import torch

    out = {"cls_token": state["embeddings.cls_token"], "pos_embed": state["embeddings.position_embeddings"],
           "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": state["layernorm.weight"], "norm.bias": state["layernorm.bias"]}
    new_names = any(".attention.q_proj." in k for k in state)
    qkv = ("q_proj", "k_proj", "v_proj") if new_names else tuple(f"attention.{n}" for n in ("query", "key", "value"))
    proj = "o_proj" if new_names else "output.dense"
    i = 0
    while f"encoder.layer.{i}.norm1.weight" in state:
        s, d = f"encoder.layer.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[d + f"attn.qkv.{part}"] = torch.cat([state[s + f"attention.{n}.{part}"] for n in qkv])
            out[d + f"attn.proj.{part}"] = state[s + f"attention.{proj}.{part}"]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[d + f"{n}.{part}"] = state[s + f"{n}.{part}"]
        out[d + "ls1.gamma"] = state[s + "layer_scale1.lambda1"]
        out[d + "ls2.gamma"] = state[s + "layer_scale2.lambda1"]
        i += 1
    return out


def find_weights(explicit: str | None = None) -> Path:
    """The original .pth, a timm or transformers model.safetensors (explicit, $T2IBENCH_WEIGHTS, caches)."""
    from t2ibench.errors import UserError
    from t2ibench.metrics import weights as w
    from t2ibench.metrics.preference import _hf_cached, find_file

    names = (FILE, "model.safetensors", "pytorch_model.bin")
    if explicit is not None:
        return find_file("DINOv2 ViT-L/14", names, TIMM_REPO, explicit, URL)
    for d in (w.weights_dir(), w.hub_checkpoints()):
        if d is not None and (d / FILE).is_file():
            return d / FILE
    for repo in (TIMM_REPO, HF_REPO):
        hit = _hf_cached(repo, "model.safetensors")
        if hit is not None:
            return hit
    try:
        return w.resolve_file(FILE, what="DINOv2 ViT-L/14", url=URL)
    except UserError:
        raise UserError(f"DINOv2 ViT-L/14 weights '{FILE}' not found; get it from {URL} and put it in "
                        f"$T2IBENCH_WEIGHTS or {w.hub_checkpoints()}/ (or the Hugging Face cache of {TIMM_REPO}), "
                        "or use weights: random for a smoke test") from None


@functools.lru_cache(maxsize=2)
def _model(kind: str | None, path: Path | None):
    from t2ibench.errors import UserError
    from t2ibench.metrics import weights as w
    from t2ibench.metrics.preference import load_matching, seeded

    if path is None:
        return _dino_module(seeded(lambda: vit(kind)))
    what = f"DINOv2 ViT-L/14 weights {path}"
    state = w.load_state_dict_file(path)
    try:
        if "embeddings.cls_token" in state:
            state = from_hf(state)
        width = state["pos_embed"].shape[-1]
    except KeyError as e:
        raise UserError(f"{what}: not a DINOv2 checkpoint (no {e.args[0]})") from None
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    model = seeded(lambda: vit(None, width, depth))
    load_matching(model, state, what)
    return _dino_module(model)


def extractor(kind: str | None, weights: str | None = None, **_: Any):
    """The FD-DINOv2 feature extractor (the Inception extractor's interface, so the feature cache works)."""
    from t2ibench.metrics.networks import Extractor
    from t2ibench.metrics.preference import identity

    path = None if kind else find_weights(weights)
    name = {"tiny": "random:tiny-dinov2", "full": "random:dinov2"}.get(kind or "", "dinov2")
    return Extractor(key=f"{name}|resize=dgm-eval{SIZE}|w={identity(path, kind)}", random_weights=kind is not None,
                     module=_model(kind, path), preprocess=dgm_eval_input)


# --- registration ------------------------------------------------------------------------------

class FDDinov2Options(Frozen):
    """``fd_dinov2: {against: reference, weights: null}``: ``against`` as FID's (reference, a folder, an .npz of
    DINOv2 ``mu``/``sigma``, e.g. from ``score stats --features dinov2``); ``weights`` as the preference metrics'
    (PATH | HUB_ID | random | random:tiny)."""

    against: str = "reference"
    weights: Optional[str] = None


def score_fd_dinov2(o: FDDinov2Options, ctx) -> list:
    from t2ibench.metrics.fid import score_frechet
    from t2ibench.metrics.networks import load_features
    from t2ibench.metrics.preference import random_kind

    kind = random_kind(o.weights)
    name = {"tiny": "random:tiny-dinov2", "full": "random:dinov2"}.get(kind or "", "dinov2")
    return score_frechet("fd_dinov2", load_features(name, weights=None if kind else o.weights), o.against, ctx)


def _networks(o: FDDinov2Options) -> list:
    from t2ibench.metrics.preference import network_checks

    return network_checks("DINOv2 ViT-L/14", o.weights, lambda: find_weights(o.weights))


METRICS.add("fd_dinov2", MetricSpec(
    name="fd_dinov2", options=FDDinov2Options, runner=score_fd_dinov2, higher_is_better=False, against=True,
    per_image=False, gate="5%", label="FD-DINOv2", summary="Fréchet distance in DINOv2 ViT-L/14 feature space "
    "(dgm-eval) between two folders or .npz files", networks=_networks, min_images=2, stats_files=True,
    estimand="the expected FD-DINOv2 " + AT_SIZE,
))
