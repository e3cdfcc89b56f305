"""One registry of metric networks: FID Inception, open_clip models and LPIPS nets.

``random:<name>`` builds the real architecture with deterministic random weights (seed 0);
results from it carry ``random_weights=True``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from t2ibench.errors import UserError
from t2ibench.metrics import images as im
from t2ibench.metrics import weights as w
from t2ibench.registry import Registry

RANDOM = "random:"
RANDOM_SEED = 0
Kind = Literal["features", "clip", "lpips"]


@dataclass
class Extractor:
    """An image → feature-vector network with its preprocessing and a cache identity."""

    key: str
    random_weights: bool
    module: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def to(self, device: str | torch.device) -> "Extractor":
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """Preprocessed (B, 3, H, W) → (B, d) float32."""
        return self.module(batch.to(self.device)).float().cpu().numpy()

    def features(self, images: Any) -> np.ndarray:
        """PIL images or paths → features (what the streaming metrics call)."""
        pils = [im.load_rgb(x) if not isinstance(x, Image.Image) else x for x in images]
        return self.forward(torch.stack([self.preprocess(p) for p in pils]))


@dataclass
class ClipModel:
    """An open_clip model: image extractor plus text tower."""

    image: Extractor
    model: nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(prompts).to(self.image.device)
        return self.model.encode_text(tokens).float().cpu().numpy()


@dataclass
class LPIPSNet:
    key: str
    random_weights: bool
    module: nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def to(self, device: str | torch.device) -> "LPIPSNet":
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        """Batched LPIPS of [-1, 1] image pairs → (B,)."""
        d = self.module(a.to(self.device), b.to(self.device), normalize=False)
        return d.flatten().double().cpu().numpy()


@dataclass(frozen=True)
class NetSpec:
    kind: Kind
    build: Callable[..., Any]


NETWORKS: Registry[NetSpec] = Registry("metric network")


def _seeded(build: Callable[[], Any]) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return build()


class _ClipImage(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


@functools.lru_cache(maxsize=4)
def _inception_model(path: Path | None, ident: str) -> nn.Module:
    from t2ibench.metrics.inception import FIDInceptionV3

    model = FIDInceptionV3()
    if path is None:
        model.init_random(RANDOM_SEED)
    else:
        model.load_fid_state_dict(w.load_state_dict_file(path))
    return model


def _inception(random: bool, resize: str = "bilinear", weights: str | None = None, **_: Any) -> Extractor:
    from t2ibench.metrics.inception import FID_WEIGHTS_FILE, FID_WEIGHTS_URL

    path = None if random else w.resolve_file(
        FID_WEIGHTS_FILE, what="FID Inception", explicit=weights, url=FID_WEIGHTS_URL,
        alternative="use features: random:inception for a smoke test")
    ident = f"random{RANDOM_SEED}" if path is None else w.file_identity(path)
    model = _inception_model(path, ident)
    name = RANDOM + "inception" if random else "inception"
    return Extractor(key=f"{name}|resize={resize}|w={ident}", random_weights=random,
                     module=model.eval(), preprocess=functools.partial(im.inception_input, resize=resize))


@functools.lru_cache(maxsize=4)
def _clip_model(arch: str, path: Path | None, quick_gelu: bool) -> tuple[nn.Module, Callable]:
    import open_clip

    if path is None:  # random weights on purpose: silence open_clip's "initialized randomly" warning
        import logging

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            model, _, preprocess = _seeded(lambda: open_clip.create_model_and_transforms(arch, pretrained=None))
        finally:
            root.setLevel(level)
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(path), force_quick_gelu=quick_gelu)
    return model.eval(), preprocess


def _clip(arch: str, random: bool, pretrained: str = "openai", **_: Any) -> ClipModel:
    import open_clip

    path, quick_gelu = (None, False) if random else w.resolve_open_clip(arch, pretrained)
    ident = f"random{RANDOM_SEED}" if path is None else f"{pretrained}:{w.file_identity(path)}"
    model, preprocess = _clip_model(arch, path, quick_gelu)
    name = RANDOM + arch if random else arch
    image = Extractor(key=f"clip:{name}|w={ident}", random_weights=random, module=_ClipImage(model),
                      preprocess=preprocess)
    return ClipModel(image=image, model=model, tokenizer=open_clip.get_tokenizer(arch))


_TV_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
_TV_MODELS = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


@functools.lru_cache(maxsize=4)
def _lpips_model(net: str, path: Path | None) -> nn.Module:
    import warnings

    import lpips
    import torchvision

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        model = _seeded(lambda: lpips.LPIPS(net=net, pnet_rand=True, verbose=False))
    if path is not None:
        backbone = getattr(torchvision.models, _TV_MODELS[net])(weights=None)
        backbone.load_state_dict(w.load_state_dict_file(path))
        src = backbone.state_dict()
        # lpips splits torchvision's `features` into slices that keep the layer indices.
        model.net.load_state_dict({k: src["features." + k.split(".", 1)[1]] for k in model.net.state_dict()})
    return model.eval()


def _lpips(net: str, random: bool, **_: Any) -> LPIPSNet:
    import torchvision

    path = None
    if not random:
        url = getattr(torchvision.models, _TV_WEIGHTS[net]).IMAGENET1K_V1.url
        path = w.resolve_file(url.rsplit("/", 1)[-1], what=f"LPIPS {net} backbone", url=url,
                              alternative=f"use net: random:{net} for a smoke test")
    ident = f"random{RANDOM_SEED}" if path is None else w.file_identity(path)
    name = RANDOM + net if random else net
    return LPIPSNet(key=f"lpips:{name}|w={ident}", random_weights=random, module=_lpips_model(net, path))


CLIP_ARCHS = ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14", "ViT-bigG-14")

for _rnd in (False, True):
    _p = RANDOM if _rnd else ""
    NETWORKS.add(_p + "inception", NetSpec("features", functools.partial(_inception, _rnd)))
    for _a in CLIP_ARCHS:
        NETWORKS.add(_p + _a, NetSpec("clip", functools.partial(_clip, _a, _rnd)))
    for _n in _TV_WEIGHTS:
        NETWORKS.add(_p + _n, NetSpec("lpips", functools.partial(_lpips, _n, _rnd)))


def _spec(name: str, kind: Kind) -> NetSpec:
    if name not in NETWORKS and kind == "clip":
        import open_clip

        arch = name.removeprefix(RANDOM)
        if arch in open_clip.list_models():  # any other open_clip architecture
            return NetSpec("clip", functools.partial(_clip, arch, name.startswith(RANDOM)))
    spec = NETWORKS.get(name)
    if spec.kind != kind:
        choices = ", ".join(n for n in NETWORKS.names() if NETWORKS.get(n).kind == kind)
        raise UserError(f"'{name}' is a {spec.kind} network, not a {kind} one; choose one of: {choices}")
    return spec


def load_features(name: str, resize: str = "bilinear", weights: str | None = None) -> Extractor:
    """An image feature extractor (``inception``, ``random:inception``)."""
    return _spec(name, "features").build(resize=resize, weights=weights)


def load_clip(name: str, pretrained: str = "openai") -> ClipModel:
    """An open_clip model (``ViT-B-32``, ``random:ViT-B-32``, …)."""
    return _spec(name, "clip").build(pretrained=pretrained)


def load_lpips(name: str) -> LPIPSNet:
    """An LPIPS net (``alex``, ``vgg``, ``squeeze``, ``random:alex``, …)."""
    return _spec(name, "lpips").build()


def _dinov2(kind: str | None, **options: Any) -> Extractor:
    from t2ibench.metrics.fd_dinov2 import extractor

    return extractor(kind, **options)


for _name, _kind in (("dinov2", None), ("random:dinov2", "full"), ("random:tiny-dinov2", "tiny")):
    NETWORKS.add(_name, NetSpec("features", functools.partial(_dinov2, _kind)))
