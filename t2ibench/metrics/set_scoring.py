"""The one scoring path of the set metrics (FID, KID, CMMD, FD-DINOv2): features of each candidate config
against one reference, a value, and a jackknife CI whose treatment of the reference fits what it is.

A metric supplies its statistic (``stat_of(x, reference) -> set_stats.IndexStat``), its floor, and
optionally its reported estimate and notes; everything else (the reference's features or statistics,
too-small sets, dimension checks, the CI and the note that says how the reference was treated) is here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from t2ibench.errors import UserError
from t2ibench.metrics import bootstrap as bs
from t2ibench.metrics.scoring import MetricResult, ScoringContext, result, too_few

PAIRED_NOTE = "CI over prompts, each deleted from the config and the reference config together"
FOLDER_NOTE = "CI resamples both sides: the reference folder is a sample too"
NPZ_NOTE = ("CI treats the .npz reference statistics as fixed (their own sampling noise is not in it); "
            "fair only when they come from many more images than the candidate")
_UNIT = re.compile(r"^(?P<prompt>.+)-(?P<seed>\d+)$")


def folder_units(paths: Sequence[Path]) -> list[str]:
    """The independent unit of each image of a folder, for resampling it.

    Files named as t2ibench writes them (``<prompt_id>-<seed>.png``), where some prompt has several
    seeds, are grouped by prompt (its seeds share its content); any other folder is taken as
    independent images.
    """
    stems = [Path(p).stem for p in paths]
    matches = [_UNIT.match(s) for s in stems]
    if all(matches):
        prompts = [m["prompt"] for m in matches]
        if len(set(prompts)) < len(prompts):
            return prompts
    return [str(Path(p).name) for p in paths]


@dataclass(frozen=True)
class Reference:
    """The reference side: image features (a reference config or a folder) or fixed statistics (an .npz).

    ``groups`` are the units a CI resamples (None: fixed); ``paired``: they are the suite's prompts,
    deleted together with the candidate's.
    """

    features: np.ndarray | None
    stats: tuple[np.ndarray, np.ndarray] | None
    groups: list[str] | None
    paired: bool
    ci_note: str  # how a CI treats this reference
    note: str | None = None  # said on every row (a foreign statistics file)

    @property
    def dim(self) -> int:
        return self.features.shape[1] if self.features is not None else len(self.stats[0])

    @property
    def n(self) -> int | None:
        return None if self.features is None else len(self.features)


def load_reference(metric: str, ext, against: str, ctx: ScoringContext,
                   prepare: Callable[[np.ndarray], np.ndarray]) -> Reference | int:
    """The reference of ``against``; the image count instead when it is empty (every reference cell failed)."""
    if against.lower().endswith(".npz"):
        from t2ibench.metrics import stats_file
        from t2ibench.metrics.fid import load_stats

        if not Path(against).is_file():
            raise UserError(f"metric {metric}: statistics file '{against}' does not exist")
        stats, meta = load_stats(against), stats_file.read_provenance(against)
        stats_file.check(against, meta, stats_file.extractor_provenance(ext.key), f"the {metric} features")
        if meta is None:
            return Reference(None, stats, None, False, NPZ_NOTE, stats_file.FOREIGN_NOTE)
        return Reference(None, stats, None, False, f"{NPZ_NOTE} (statistics of {meta.get('count', '?')} images)")
    if against == "reference":
        recs = ctx.reference_records(metric)
        paths, groups, paired, note = [r.path for r in recs], [r.prompt_id for r in recs], True, PAIRED_NOTE
    else:
        paths = ctx.reference_paths(metric, against)
        groups, paired, note = folder_units(paths), False, FOLDER_NOTE
    if not paths:
        return 0
    return Reference(prepare(ctx.features(ext, paths)), None, groups, paired, note)


Estimate = Callable[[np.ndarray, Reference, Callable], "tuple[float, dict, list[str]]"]


def score_set(metric: str, ext, against: str, ctx: ScoringContext, *,
              stat_of: Callable[[np.ndarray, Reference], Callable], min_images: int, floor: float | None = 0.0,
              prepare: Callable[[np.ndarray], np.ndarray] = lambda f: f,
              estimate_of: Estimate | None = None, pairwise: bool = False) -> list[MetricResult]:
    """Every candidate config's ``metric`` against ``against``, with its CI (``bootstrap.set_ci``).

    ``estimate_of(x, ref, stat)`` returns the reported value, extra columns and notes; by default the
    value is ``stat`` on all images. ``pairwise``: the statistic is a bounded kernel's sum over pairs of
    images (CMMD), which sharpens the CI's variance correction (``bootstrap.set_ci``). Sets under
    ``min_images`` (on either side) give NaN rows that say so.
    """
    ref = load_reference(metric, ext, against, ctx, prepare)
    if isinstance(ref, int) or (ref.n is not None and ref.n < min_images):
        n_ref = ref if isinstance(ref, int) else ref.n
        return [too_few(cfg, metric, n_ref, min_images, ext.random_weights, "reference")
                for cfg in ctx.candidates(against)]
    from t2ibench.metrics.fid import check_dims

    out = []
    for cfg in ctx.candidates(against):
        recs = ctx.configs[cfg]
        x = prepare(ctx.features(ext, [r.path for r in recs]))
        if len(x) < min_images:
            out.append(too_few(cfg, metric, len(x), min_images, ext.random_weights))
            continue
        check_dims(against, ref.dim, f"the '{ext.key.split('|', 1)[0]}' features", x.shape[1])
        stat = stat_of(x, ref)
        if estimate_of is None:
            value, extra, notes = float(stat(np.arange(len(x)), None)), {}, []
        else:
            value, extra, notes = estimate_of(x, ref, stat)
        ci = None
        if ctx.ci:
            ci = bs.set_ci(stat, [r.prompt_id for r in recs], ref.groups, paired=ref.paired, seed=ctx.seed,
                           estimate=value, floor=floor, pairwise=pairwise)
            notes = [*notes, ref.ci_note]
        if ref.note:
            notes = [*notes, ref.note]
        if ref.n is not None:
            extra["n_ref"] = ref.n
        out.append(result(cfg, metric, value, ci, ext.random_weights, len(x), notes, **extra))
    return out
