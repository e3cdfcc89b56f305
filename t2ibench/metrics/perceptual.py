"""LPIPS through the ``lpips`` package: paired distances and per-prompt diversity."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from t2ibench.metrics import images as im
from t2ibench.metrics.cache import FeatureCache, content_hash
from t2ibench.metrics.networks import LPIPSNet, load_lpips

MIN_PAIRS = 1  # a per-pair distance
SAFE_SIDE = 64  # alex, vgg and squeeze all accept 64×64 (their minimum sides are 31, 16 and 17)
_MIN_SIDE: dict[str, int] = {}


def min_side(net: LPIPSNet, limit: int = 512) -> int:
    """The smallest image side (pixels) the network's pooling layers accept, found by trying (once per net)."""
    if net.key not in _MIN_SIDE:
        def fits(side: int) -> bool:
            x = torch.zeros(1, 3, side, side)
            try:
                net.distance(x, x)
                return True
            except RuntimeError:
                return False

        hi = 1  # double up to a side that fits (small probes are cheap), then bisect below it:
        while hi < limit and not fits(hi):  # conv nets accept every side above their minimum
            hi *= 2
        lo = hi // 2 + 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
        _MIN_SIDE[net.key] = lo
    return _MIN_SIDE[net.key]


def too_small(net: LPIPSNet, sizes: dict[Path, tuple[int, int]]) -> tuple[list[Path], int]:
    """The images (of ``sizes``: path → (w, h)) smaller than the network accepts, and its minimum side."""
    if not sizes or min(min(wh) for wh in sizes.values()) >= SAFE_SIDE:
        return [], 0  # no need to probe the network
    side = min_side(net)
    return [p for p, wh in sizes.items() if min(wh) < side], side


def too_small_note(small: list[Path], side: int, sizes: dict[Path, tuple[int, int]]) -> str:
    w, h = sizes[small[0]]
    return f"images too small for LPIPS ({len(small)} below {side}×{side} pixels, e.g. {small[0].name} {w}×{h})"


def resize_note(pairs: Sequence[tuple[Path, Path]], sizes: dict[Path, tuple[int, int]]) -> str | None:
    """Say how many pairs differ in size: the first image of each is resized to its partner's (None if none)."""
    differ = [(a, b) for a, b in pairs if sizes[a] != sizes[b]]
    if not differ:
        return None
    a, b = differ[0]
    (wa, ha), (wb, hb) = sizes[a], sizes[b]
    return (f"{len(differ)} of {len(pairs)} pairs differ in size; the first image of each was resized (bilinear) "
            f"to its partner's size before LPIPS, e.g. {a.name} {wa}×{ha} → {wb}×{hb}")


def _pair_tensors(a: Path, b: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Both in [-1, 1]; ``a`` is resized (bilinear) to ``b``'s size when they differ."""
    ta, tb = im.lpips_input(im.load_rgb(a)), im.lpips_input(im.load_rgb(b))
    if ta.shape != tb.shape:
        ta = F.interpolate(ta[None], size=tb.shape[1:], mode="bilinear", align_corners=False)[0]
    return ta, tb


def pair_distances(net: LPIPSNet, pairs: Sequence[tuple[Path, Path]], cache: FeatureCache | None = None,
                   threads: int = 2) -> np.ndarray:
    """LPIPS of each (a, b) file pair; cached by both files' content."""
    cache = cache or FeatureCache(None)
    keys = [f"{content_hash(a)}:{content_hash(b)}" for a, b in pairs]
    found = {k: float(v[0]) for k, v in cache.get(net.key, keys).items()}
    todo = [i for i, k in enumerate(keys) if k not in found]
    with ThreadPoolExecutor(threads) as pool:  # decode ahead of the network
        for i, (ta, tb) in zip(todo, pool.map(lambda i: _pair_tensors(*pairs[i]), todo)):
            found[keys[i]] = float(net.distance(ta[None], tb[None])[0])
    cache.put(net.key, {keys[i]: np.array([found[keys[i]]]) for i in todo})
    return np.array([found[k] for k in keys])


def diversity(net: LPIPSNet, group: Sequence[Path], cache: FeatureCache | None = None) -> float:
    """Mean pairwise LPIPS among the images of one prompt (its seeds); NaN for fewer than 2."""
    pairs = list(itertools.combinations(group, 2))
    return float(pair_distances(net, pairs, cache).mean()) if pairs else float("nan")


def lpips(a: Sequence[str | Path], b: Sequence[str | Path], net: str = "alex", device: str = "cpu",
          cache: FeatureCache | None = None) -> np.ndarray:
    """Per-pair LPIPS between image files ``a[i]`` and ``b[i]``."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} images")
    model = load_lpips(net).to(device)
    return pair_distances(model, [(Path(x), Path(y)) for x, y in zip(a, b)], cache)


lpips.higher_is_better = False  # type: ignore[attr-defined]
