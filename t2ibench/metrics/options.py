"""Options of each metric, as written in a suite's ``metrics:`` section (cheap to import)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from t2ibench.suites.knobs import Frozen

Resize = Literal["bilinear", "clean"]


def _no_npz(against: str) -> str:
    if against.lower().endswith(".npz"):
        raise ValueError("an .npz holds only FID statistics (mu, sigma); this metric needs a "
                         "folder of images or 'reference'")
    return against


class FIDOptions(Frozen):
    """``fid: {against: reference, features: inception, resize: bilinear}``.

    ``against``: ``reference`` (the suite's reference config), a folder of images, or an
    ``.npz`` holding pytorch-fid ``mu``/``sigma``. ``features``: ``inception`` or
    ``random:inception``. ``weights``: an explicit path to the Inception weights file.
    """

    against: str = "reference"
    features: str = "inception"
    resize: Resize = "bilinear"
    weights: Optional[str] = None


class KIDOptions(Frozen):
    """``kid: {against: reference, features: inception}``; ``against`` cannot be an ``.npz``."""

    against: str = "reference"
    features: str = "inception"
    resize: Resize = "bilinear"
    weights: Optional[str] = None
    subsets: int = Field(100, gt=0)
    subset_size: int = Field(1000, gt=1)
    degree: int = Field(3, gt=0)

    _against = field_validator("against")(_no_npz)


class CMMDOptions(Frozen):
    """``cmmd: {against: reference, model: ViT-L-14-336}``; ``model`` is open_clip or ``random:<arch>``."""

    against: str = "reference"
    model: str = "ViT-L-14-336"
    pretrained: str = "openai"

    _against = field_validator("against")(_no_npz)


class ClipScoreOptions(Frozen):
    """``clip_score: {model: ViT-B-32, pretrained: openai}``."""

    model: str = "ViT-B-32"
    pretrained: str = "openai"


class LPIPSOptions(Frozen):
    """``lpips: {against: reference, net: alex}``; ``net``: alex | vgg | squeeze | random:<net>."""

    against: str = "reference"
    net: str = "alex"

    _against = field_validator("against")(_no_npz)


METRIC_OPTIONS: dict[str, type[Frozen]] = {
    "fid": FIDOptions,
    "kid": KIDOptions,
    "cmmd": CMMDOptions,
    "clip_score": ClipScoreOptions,
    "lpips": LPIPSOptions,
}

HIGHER_IS_BETTER: dict[str, bool] = {
    "fid": False,
    "kid": False,
    "cmmd": False,
    "clip_score": True,
    "lpips": False,
    "lpips_diversity": True,
}
