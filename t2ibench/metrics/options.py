"""Option models and texts that several metrics share, apart from the metric modules (which import the registry,
which imports them)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from t2ibench.base import Frozen

AT_SIZE = ("at this set size (the config's and the reference's image counts), what 'FID-10k' means in papers; "
           "not the population value, which it overestimates at small n: compare configs of equal size")


class InceptionFeatures(Frozen):
    """The Inception feature options that FID and KID share: ``features``, ``resize``, ``weights``."""

    features: str = Field("inception", description="feature network: inception, or random:inception "
                                                   "(random weights, for tests)")
    resize: Literal["bilinear", "clean"] = Field(
        "bilinear", description="resizing to 299×299: bilinear (as pytorch-fid) or clean (PIL bicubic, as clean-fid)")
    weights: Optional[str] = Field(None, description="path of the Inception weights file "
                                                     "(pt_inception-2015-12-05-6726825d.pth); default: looked up in "
                                                     "$T2IBENCH_WEIGHTS, then torch hub's checkpoints")
