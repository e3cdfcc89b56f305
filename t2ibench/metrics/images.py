"""Image files and the preprocessing each network expects (runs in loader workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import to_tensor

from t2ibench.errors import UserError

IMAGE_EXTENSIONS = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
INCEPTION_SIZE = 299


def list_images(folder: str | Path) -> list[Path]:
    """The images directly in ``folder``, sorted by name (as pytorch-fid lists them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise UserError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


# what PIL raises on a file that is not a (whole, sane) image
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def unreadable(path: str | Path, error: BaseException) -> str:
    """The one-line problem for an image file that cannot be decoded."""
    return f"{path}: cannot read image ({str(error).strip() or type(error).__name__})"


def load_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except DECODE_ERRORS as e:
        raise UserError(unreadable(path, e)) from None


def image_sizes(paths: list[Path]) -> dict[Path, tuple[int, int]]:
    """(width, height) of each file from its header (cheap: nothing is decoded).

    Every file that is not an image is a problem; all of them are raised together, one line each.
    """
    sizes, problems = {}, []
    for p in paths:
        try:
            with Image.open(p) as img:
                sizes[p] = img.size
        except DECODE_ERRORS as e:
            problems.append(unreadable(p, e))
    if problems:
        raise UserError(problems[0], problems=problems)
    return sizes


def inception_input(img: Image.Image, resize: Literal["bilinear", "clean"] = "bilinear") -> torch.Tensor:
    """(3, 299, 299) in [-1, 1].

    ``bilinear``: [0,1] tensor → ``F.interpolate(bilinear, align_corners=False)``, exactly
    pytorch-fid's InceptionV3(resize_input=True, normalize_input=True).
    ``clean``: PIL bicubic resize of each channel in float, as clean-fid does.
    """
    if resize == "bilinear":
        x = to_tensor(img).unsqueeze(0)
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return (2 * x - 1).squeeze(0)
    if resize == "clean":
        arr = np.asarray(img, dtype=np.float32)
        chans = [np.asarray(Image.fromarray(arr[..., c], mode="F")
                            .resize((INCEPTION_SIZE, INCEPTION_SIZE), Image.Resampling.BICUBIC))
                 for c in range(3)]
        x = torch.from_numpy(np.clip(np.stack(chans), 0, 255) / 255.0).float()
        return 2 * x - 1
    raise ValueError(f"unknown resize mode {resize!r}")


def lpips_input(img: Image.Image) -> torch.Tensor:
    """(3, H, W) in [-1, 1] at native size."""
    return 2 * to_tensor(img) - 1
