"""Score a run's images: a pure function from image records to metric rows.

Against ``reference``, the reference config gets no FID/KID/CMMD/LPIPS row of its own (it would
be ~0 by construction); it does get ``clip_score`` and ``lpips_diversity`` rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel

from t2ibench.errors import UserError
from t2ibench.metrics import bootstrap as bs
from t2ibench.metrics import set_stats
from t2ibench.metrics.cache import FeatureCache
from t2ibench.metrics.clipscore import cosine_scores
from t2ibench.metrics.cmmd import l2_normalise
from t2ibench.metrics.features import extract, resolve_device
from t2ibench.metrics.fid import MIN_UNBIASED_N, bias_note, load_stats
from t2ibench.metrics.images import list_images
from t2ibench.metrics.kid import kid
from t2ibench.metrics.networks import Extractor, load_clip, load_features, load_lpips
from t2ibench.metrics.options import METRIC_OPTIONS
from t2ibench.metrics.perceptual import diversity, pair_distances
from t2ibench.registry import did_you_mean

RANDOM_NOTE = "not meaningful (random weights)"


@dataclass(frozen=True)
class ImageRecord:
    config_id: str
    prompt_id: str
    prompt: str
    seed: int
    path: Path


@dataclass(frozen=True)
class MetricResult:
    config_id: str
    metric: str
    value: float
    lo: float | None
    hi: float | None
    random_weights: bool
    n: int
    extra: dict = field(default_factory=dict)


@dataclass
class _Ctx:
    configs: dict[str, list[ImageRecord]]
    reference_id: str | None
    device: str
    cache: FeatureCache
    seed: int
    progress: Callable[[str], None] | None


def _ci(lo_hi: tuple[float, float]) -> tuple[float | None, float | None]:
    lo, hi = lo_hi
    return (None, None) if math.isnan(lo) or math.isnan(hi) else (lo, hi)


def _result(cfg: str, metric: str, value: float, ci: tuple[float, float], random: bool, n: int,
            notes: list[str] | None = None, **extra: Any) -> MetricResult:
    notes = ([RANDOM_NOTE] if random else []) + (notes or [])
    if notes:
        extra["notes"] = notes
    return MetricResult(cfg, metric, float(value), *_ci(ci), random_weights=random, n=n, extra=extra)


def per_image(recs: list[ImageRecord], values: np.ndarray) -> dict[str, float]:
    """``extra['per_image']``: each image's value keyed ``"prompt_id:seed"`` (paired comparisons need them)."""
    return {f"{r.prompt_id}:{r.seed}": float(v) for r, v in zip(recs, values)}


def _candidates(against: str, ctx: _Ctx) -> list[str]:
    return [c for c in ctx.configs if not (against == "reference" and c == ctx.reference_id)]


def _reference_paths(metric: str, against: str, ctx: _Ctx) -> list[Path]:
    if against == "reference":
        if ctx.reference_id is None:
            raise UserError(f"metric {metric}: 'against: reference' but the suite has no reference config")
        if ctx.reference_id not in ctx.configs:
            raise UserError(f"metric {metric}: the reference config '{ctx.reference_id}' has no images")
        return [r.path for r in ctx.configs[ctx.reference_id]]
    return list_images(against)


def _features(ext: Extractor, paths: list[Path], ctx: _Ctx) -> np.ndarray:
    return extract(paths, ext.to(ctx.device), ctx.cache, progress=ctx.progress).astype(np.float64)


def _ref_groups(against: str, ctx: _Ctx) -> list[str] | None:
    """Prompt ids of the reference images when the reference is the suite's reference config (paired CIs)."""
    return [r.prompt_id for r in ctx.configs[ctx.reference_id]] if against == "reference" else None


def _fid(o: BaseModel, ctx: _Ctx) -> list[MetricResult]:
    """FID per config with a jackknife CI over prompts (``bootstrap.set_ci``).

    The trace term Tr sqrt(Σ_x Σ_ref) is computed exactly without a d×d ``sqrtm`` (``set_stats.fid_stat``):
    from both feature sets (nuclear norm of the n×m cross matrix) while the reference has fewer
    samples than dimensions, otherwise through one symmetric square root of Σ_ref (or, for a
    jackknife replicate that also deletes reference images, a Cholesky factor). These agree with
    pytorch-fid's ``sqrtm`` form to ~1e-7 relative, at a fraction of the cost.
    """
    ext = load_features(o.features, o.resize, o.weights)
    y = None
    if o.against.lower().endswith(".npz"):
        if not Path(o.against).is_file():
            raise UserError(f"metric fid: statistics file '{o.against}' does not exist")
        ref = set_stats.FidReference(load_stats(o.against))
    else:
        y = _features(ext, _reference_paths("fid", o.against, ctx), ctx)
        ref = set_stats.FidReference(y)
    ref_groups = _ref_groups(o.against, ctx)
    out = []
    for cfg in _candidates(o.against, ctx):
        recs = ctx.configs[cfg]
        x = _features(ext, [r.path for r in recs], ctx)
        fid_of = set_stats.fid_stat(x, ref)
        value = fid_of(np.arange(len(x)), None)
        n_ref = len(y) if y is not None else None
        notes = [bias_note(n) for n in sorted({len(x), n_ref or len(x)}) if n < MIN_UNBIASED_N]
        ci = bs.set_ci(fid_of, [r.prompt_id for r in recs], ref_groups, seed=ctx.seed, estimate=value, floor=0.0)
        out.append(_result(cfg, "fid", value, ci, ext.random_weights, len(x), notes))
    return out


def _kid(o: BaseModel, ctx: _Ctx) -> list[MetricResult]:
    """KID per config; its CI is the jackknife of the full U-statistic, anchored on the reported subset mean."""
    ext = load_features(o.features, o.resize, o.weights)
    y = _features(ext, _reference_paths("kid", o.against, ctx), ctx)
    ref_groups = _ref_groups(o.against, ctx)
    out = []
    for cfg in _candidates(o.against, ctx):
        recs = ctx.configs[cfg]
        x = _features(ext, [r.path for r in recs], ctx)
        mean, std = kid(x, y, o.subsets, o.subset_size, o.degree, ctx.seed)
        stat = set_stats.kid_stat(x, y, o.degree, paired=ref_groups is not None)
        ci = bs.set_ci(stat, [r.prompt_id for r in recs], ref_groups, seed=ctx.seed, estimate=mean)
        out.append(_result(cfg, "kid", mean, ci, ext.random_weights, len(x), kid_std=std))
    return out


def _cmmd(o: BaseModel, ctx: _Ctx) -> list[MetricResult]:
    ext = load_clip(o.model, o.pretrained).image
    y = l2_normalise(_features(ext, _reference_paths("cmmd", o.against, ctx), ctx))
    ref_groups = _ref_groups(o.against, ctx)
    out = []
    for cfg in _candidates(o.against, ctx):
        recs = ctx.configs[cfg]
        x = l2_normalise(_features(ext, [r.path for r in recs], ctx))
        stat = set_stats.cmmd_stat(x, y, paired=ref_groups is not None)
        value = stat(np.arange(len(x)), None if ref_groups is None else np.arange(len(y)))
        ci = bs.set_ci(stat, [r.prompt_id for r in recs], ref_groups, seed=ctx.seed, floor=0.0)
        out.append(_result(cfg, "cmmd", value, ci, ext.random_weights, len(x)))
    return out


def _clip_score(o: BaseModel, ctx: _Ctx) -> list[MetricResult]:
    clip = load_clip(o.model, o.pretrained)
    clip.image.to(ctx.device)
    prompts = list(dict.fromkeys(r.prompt for recs in ctx.configs.values() for r in recs))
    text = dict(zip(prompts, clip.encode_text(prompts)))
    out = []
    for cfg, recs in ctx.configs.items():
        img = _features(clip.image, [r.path for r in recs], ctx)
        s = cosine_scores(img, np.stack([text[r.prompt] for r in recs]))
        ci = bs.mean_ci(s, [r.prompt_id for r in recs], seed=ctx.seed)
        out.append(_result(cfg, "clip_score", s.mean(), ci, clip.image.random_weights, len(s),
                           per_image=per_image(recs, s)))
    return out


def _lpips(o: BaseModel, ctx: _Ctx) -> list[MetricResult]:
    net = load_lpips(o.net).to(ctx.device)
    if o.against == "reference":
        _reference_paths("lpips", "reference", ctx)
        ref = {(r.prompt_id, r.seed): r.path for r in ctx.configs[ctx.reference_id]}
        partner = lambda r: ref.get((r.prompt_id, r.seed))  # noqa: E731
    else:
        by_name = {p.name: p for p in list_images(o.against)}
        partner = lambda r: by_name.get(r.path.name)  # noqa: E731
    div: dict[str, tuple[float, tuple[float, float], int]] = {}
    out = []
    for cfg, recs in ctx.configs.items():
        prompts = list(dict.fromkeys(r.prompt_id for r in recs))
        per_prompt = np.array([diversity(net, [r.path for r in recs if r.prompt_id == p], ctx.cache) for p in prompts])
        if np.isfinite(per_prompt).any():
            div[cfg] = (float(np.nanmean(per_prompt)), bs.mean_ci(per_prompt, prompts, seed=ctx.seed), len(recs))
            out.append(_result(cfg, "lpips_diversity", *div[cfg][:2], net.random_weights, len(recs)))
    for cfg in _candidates(o.against, ctx):
        pairs = [(r, partner(r)) for r in ctx.configs[cfg]]
        paired = [(r, p) for r, p in pairs if p is not None]
        if not paired:
            raise UserError(f"metric lpips: config '{cfg}' has no image paired with '{o.against}' "
                            "(pairs are matched by prompt and seed, or by file name for a folder)")
        d = pair_distances(net, [(r.path, p) for r, p in paired], ctx.cache)
        ci = bs.mean_ci(d, [r.prompt_id for r, _ in paired], seed=ctx.seed)
        notes = [f"{len(pairs) - len(paired)} images without a partner were skipped"] if len(paired) < len(pairs) else []
        extra = {"diversity": div[cfg][0]} if cfg in div else {}
        extra["per_image"] = per_image([r for r, _ in paired], d)
        out.append(_result(cfg, "lpips", d.mean(), ci, net.random_weights, len(d), notes, **extra))
    return out


_RUNNERS: dict[str, Callable[[BaseModel, _Ctx], list[MetricResult]]] = {
    "fid": _fid, "kid": _kid, "cmmd": _cmmd, "clip_score": _clip_score, "lpips": _lpips,
}


def _options(name: str, opts: BaseModel | dict | None) -> BaseModel:
    if name not in METRIC_OPTIONS:
        raise UserError(f"unknown metric '{name}'{did_you_mean(name, list(METRIC_OPTIONS))}; "
                        f"choose one of: {', '.join(METRIC_OPTIONS)}")
    cls = METRIC_OPTIONS[name]
    if isinstance(opts, cls):
        return opts
    data = opts.model_dump() if isinstance(opts, BaseModel) else (opts or {})
    return cls.model_validate(data)


def evaluate(metrics: dict[str, BaseModel], images: list[ImageRecord], reference_id: str | None, *,
             device: str = "cpu", cache_dir: Path | None, seed: int = 0,
             progress: Callable[[str], None] | None = None) -> list[MetricResult]:
    """Compute each metric for each config of ``images``; rows carry 95% jackknife CIs over prompts."""
    opts = {name: _options(name, o) for name, o in metrics.items()}
    configs: dict[str, list[ImageRecord]] = {}
    for r in images:
        configs.setdefault(r.config_id, []).append(r)
    cache = FeatureCache(cache_dir)
    ctx = _Ctx(configs, reference_id, resolve_device(device), cache, seed, progress)
    try:
        return [row for name, o in opts.items() for row in _RUNNERS[name](o, ctx)]
    finally:
        cache.close()
