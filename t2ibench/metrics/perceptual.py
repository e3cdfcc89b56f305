"""LPIPS through the ``lpips`` package: paired distances and per-prompt diversity."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from pydantic import Field, field_validator

from t2ibench.base import Frozen, plural
from t2ibench.metrics.cache import FeatureCache, content_hash
from t2ibench.metrics.registry import Column, METRICS, MetricSpec, NetworkCheck, no_npz

if TYPE_CHECKING:
    import torch

    from t2ibench.metrics.networks import LPIPSNet

SAFE_SIDE = 64  # alex, vgg and squeeze all accept 64×64 (their minimum sides are 31, 16 and 17)
_MIN_SIDE: dict[str, int] = {}


def min_side(net: LPIPSNet, limit: int = 512) -> int:
    """The smallest image side (pixels) the network's pooling layers accept, found by trying (once per net)."""
    if net.key not in _MIN_SIDE:
        import torch

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
    example = f"{small[0].parent.name}/{small[0].name}"
    return f"images too small for LPIPS ({len(small)} below {side}×{side} pixels, e.g. {example} {w}×{h})"


def resize_note(pairs: Sequence[tuple[Path, Path]], sizes: dict[Path, tuple[int, int]]) -> str | None:
    """Say how many pairs differ in size: the first image of each is resized to its partner's (None if none)."""
    differ = [(a, b) for a, b in pairs if sizes[a] != sizes[b]]
    if not differ:
        return None
    a, b = differ[0]
    (wa, ha), (wb, hb) = sizes[a], sizes[b]
    return (f"{len(differ)} of {len(pairs)} pairs differ in size; the first image of each was resized (bilinear) "
            f"to its partner's size before LPIPS, e.g. {a.name} {wa}×{ha} → {wb}×{hb}")


def _pair_tensors(a: Path, b: Path) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Both in [-1, 1]; ``a`` is resized (bilinear) to ``b``'s size when they differ."""
    import torch.nn.functional as F

    from t2ibench.metrics import images as im

    ta, tb = im.lpips_input(im.load_rgb(a)), im.lpips_input(im.load_rgb(b))
    if ta.shape != tb.shape:
        ta = F.interpolate(ta[None], size=tb.shape[1:], mode="bilinear", align_corners=False)[0]
    return ta, tb


def pair_distances(net: "LPIPSNet", pairs: Sequence[tuple[Path, Path]], cache: FeatureCache | None = None,
                   threads: int = 2, progress: Callable[[str, int, int], None] | None = None) -> np.ndarray:
    """LPIPS of each (a, b) file pair; cached by both files' content. ``progress`` as :func:`extract`'s."""
    cache = cache or FeatureCache(None)
    keys = [f"{content_hash(a)}:{content_hash(b)}" for a, b in pairs]
    found = {k: float(v[0]) for k, v in cache.get(net.key, keys).items()}
    todo = [i for i, k in enumerate(keys) if k not in found]
    if progress and todo:
        progress("lpips", 0, len(todo))
    with ThreadPoolExecutor(threads) as pool:  # decode ahead of the network
        for i, (ta, tb) in zip(todo, pool.map(lambda i: _pair_tensors(*pairs[i]), todo)):
            found[keys[i]] = float(net.distance(ta[None], tb[None])[0])
            if progress:
                progress("lpips", 1, 0)
    cache.put(net.key, {keys[i]: np.array([found[keys[i]]]) for i in todo})
    return np.array([found[k] for k in keys])


def diversity(net: "LPIPSNet", group: Sequence[Path], cache: FeatureCache | None = None,
              progress: Callable[[str, int, int], None] | None = None) -> float:
    """Mean pairwise LPIPS among the images of one prompt (its seeds); NaN for fewer than 2."""
    pairs = list(itertools.combinations(group, 2))
    return float(pair_distances(net, pairs, cache, progress=progress).mean()) if pairs else float("nan")


def lpips(a: Sequence[str | Path], b: Sequence[str | Path], net: str = "alex", device: str = "cpu",
          cache: FeatureCache | None = None) -> np.ndarray:
    """Per-pair LPIPS between image files ``a[i]`` and ``b[i]``."""
    from t2ibench.metrics.networks import load_lpips

    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} images")
    model = load_lpips(net).to(device)
    return pair_distances(model, [(Path(x), Path(y)) for x, y in zip(a, b)], cache)




# --- registration ------------------------------------------------------------------------------

class LPIPSOptions(Frozen):
    """``lpips: {against: reference, net: alex}``; ``net``: alex | vgg | squeeze | random:<net>."""

    against: str = Field("reference", description="reference (the suite's reference config) or a folder of "
                                                  "images with the same file names")
    net: str = Field("alex", description="LPIPS network: alex, vgg, squeeze, or random:<net> (random weights, "
                                         "for tests)")

    _against = field_validator("against")(no_npz)


def score_lpips(o: LPIPSOptions, ctx) -> list:
    """Paired LPIPS against the reference (same prompt and seed) or a folder (same file name), and each
    config's diversity: the mean pairwise LPIPS across the seeds of a prompt.

    A pair is compared at its second image's size: images below the network's minimum there give a
    NaN row that says so, and pairs of two sizes get a note.
    """
    import math

    from t2ibench.errors import UserError
    from t2ibench.metrics import bootstrap as bs
    from t2ibench.metrics.images import image_sizes
    from t2ibench.metrics.networks import load_lpips
    from t2ibench.metrics.scoring import per_image, result

    def unscored(cfg: str, metric: str, n: int, note: str):
        return result(cfg, metric, math.nan, None, net.random_weights, n, [note])

    net = load_lpips(o.net).to(ctx.device)
    if o.against == "reference":
        ref = {(r.prompt_id, r.seed): r.path for r in ctx.reference_records("lpips")}
        partner = lambda r: ref.get((r.prompt_id, r.seed))  # noqa: E731
    else:
        by_name = {p.name: p for p in ctx.reference_paths("lpips", o.against)}
        partner = lambda r: by_name.get(r.path.name)  # noqa: E731
    div: dict[str, float] = {}
    out = []
    for cfg, recs in ctx.configs.items():
        sizes = image_sizes([r.path for r in recs])
        small, side = too_small(net, sizes)
        if small:
            out.append(unscored(cfg, "lpips_diversity", len(recs), too_small_note(small, side, sizes)))
            continue
        prompts = list(dict.fromkeys(r.prompt_id for r in recs))
        per_prompt = np.array([diversity(net, [r.path for r in recs if r.prompt_id == p], ctx.cache, ctx.progress)
                               for p in prompts])
        if np.isfinite(per_prompt).any():
            div[cfg] = float(np.nanmean(per_prompt))
            ci = bs.mean_ci(per_prompt, prompts, seed=ctx.seed) if ctx.ci else None
            out.append(result(cfg, "lpips_diversity", div[cfg], ci, net.random_weights, len(recs)))
    for cfg in ctx.candidates(o.against):
        pairs = [(r, partner(r)) for r in ctx.configs[cfg]]
        paired = [(r, p) for r, p in pairs if p is not None]
        if not paired and o.against == "reference":
            out.append(unscored(cfg, "lpips", 0, "no reference image to pair with (the reference config has no "
                                                 "ok image of these prompts and seeds)"))
            continue
        if not paired:
            raise UserError(f"metric lpips: config '{cfg}' has no image paired with '{o.against}' "
                            "(pairs are matched by prompt and seed, or by file name for a folder)")
        files = [(r.path, p) for r, p in paired]
        sizes = image_sizes(list(dict.fromkeys(f for pair in files for f in pair)))
        small, side = too_small(net, {p: sizes[p] for _, p in files})
        if small:
            out.append(unscored(cfg, "lpips", len(paired), too_small_note(small, side, sizes)))
            continue
        d = pair_distances(net, files, ctx.cache, progress=ctx.progress)
        ci = bs.mean_ci(d, [r.prompt_id for r, _ in paired], seed=ctx.seed) if ctx.ci else None
        unpaired = len(pairs) - len(paired)
        notes = [f"{plural(unpaired, 'image')} without a partner skipped"] if unpaired else []
        notes += [n for n in (resize_note(files, sizes),) if n]
        extra = {"diversity": div[cfg]} if cfg in div else {}
        out.append(result(cfg, "lpips", d.mean(), ci, net.random_weights, len(d), notes, std=float(d.std()),
                          per_image=per_image([r for r, _ in paired], d), n_ref=len(d), **extra))
    return out


LPIPS_NETS = ("alex", "vgg", "squeeze", "random:alex", "random:vgg", "random:squeeze")


def _lpips_networks(o: LPIPSOptions) -> list[NetworkCheck]:
    from t2ibench.metrics.weights import check_name, random_weights, resolve_file

    check = lambda: check_name("LPIPS net", o.net, LPIPS_NETS)  # noqa: E731
    if o.net.startswith("random:") or o.net not in LPIPS_NETS:
        return [NetworkCheck(f"LPIPS {o.net}", random_weights, check, option="net")]
    if o.net != "alex":  # torchvision's own lookup, when it runs
        return [NetworkCheck(f"LPIPS {o.net}", lambda: f"{o.net}: looked up by torchvision when scored", check,
                             option="net")]
    return [NetworkCheck("LPIPS alex backbone", lambda: str(resolve_file("alexnet-owt-7be5be79.pth", what="AlexNet")),
                         check, option="net")]


METRICS.add("lpips", MetricSpec(
    name="lpips", options=LPIPSOptions, runner=score_lpips, higher_is_better=False, against=True, per_image=True,
    gate=0.02, label="LPIPS", summary="mean LPIPS between same-named images of two folders",
    networks=_lpips_networks, min_images=1,
    extra_columns=(Column("lpips_diversity", higher_is_better=True, against=False, per_image=False, gate=0.02,
                          label="LPIPS diversity",
                          estimand="the mean pairwise LPIPS between seeds of one prompt, over prompts like these"),),
    estimand="the mean LPIPS to the reference's image of the same prompt and seed, over prompts like these",
))
lpips.higher_is_better = METRICS.get("lpips").higher_is_better  # type: ignore[attr-defined]
