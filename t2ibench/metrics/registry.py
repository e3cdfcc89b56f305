"""The metric registry: each metric is declared once, as a :class:`MetricSpec`.

Everything else derives from the registration: suite validation of ``metrics:``, the
``t2ibench score <metric>`` subcommand and its flags, the results columns, compare's gates and
tests, the reference exclusion on the Pareto frontier, ``doctor`` and the report labels.

Adding a metric is one module (its options model, its runner and ``METRICS.add(...)``) plus one
line in ``_BUILTIN``. Importing this module stays cheap: metric modules keep torch, open_clip
and lpips imports inside their runners.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from t2ibench.base import Frozen
from t2ibench.registry import Registry

if TYPE_CHECKING:
    from t2ibench.metrics.scoring import MetricResult, ScoringContext

Gate = Union[float, str]  # "5%" (relative) or 0.5 (absolute)


@dataclass(frozen=True)
class Column:
    """One results column a metric writes (its value, with ``_lo``/``_hi`` CI columns beside it)."""

    name: str
    higher_is_better: bool
    against: bool  # measured against the reference config or a folder
    per_image: bool  # rows carry per-image values, so compare can pair images
    gate: Gate
    label: str
    estimand: str = ""  # what the value and its 95% CI estimate, for the docs and the report's column notes


def _known() -> None:
    return None


@dataclass(frozen=True)
class NetworkCheck:
    """A network a metric's options name, for ``doctor`` and the preflight of ``validate`` and ``run``.

    ``find()`` returns where its weights are, or raises UserError saying where to put them (it may
    download them unless offline). ``check()`` raises UserError (with did-you-mean) when the options
    name no such network, without reading any weights. ``option``: the option that names it.
    """

    label: str
    find: Callable[[], str]
    check: Callable[[], None] = _known
    option: str = ""


@dataclass(frozen=True)
class MetricSpec:
    """A metric's declaration.

    ``runner(options, ctx)`` returns the metric rows of every config in ``ctx`` (see
    :mod:`t2ibench.metrics.scoring`). ``against``: measured against a reference (the suite's
    reference config, a folder, or, when ``stats_files``, a FID ``.npz``). ``prompts``: needs
    each image's prompt (CLIP score). ``min_images``: fewer images on a side give a row whose
    note says so, never a bare number. ``extra_columns``: further columns the runner writes
    (LPIPS writes ``lpips_diversity``). ``estimand``: what the value and its CI estimate (one sentence).
    """

    name: str
    options: type[Frozen]
    runner: Callable[[Any, "ScoringContext"], list["MetricResult"]]
    higher_is_better: bool
    against: bool
    per_image: bool
    gate: Gate
    label: str
    summary: str
    networks: Callable[[Any], list[NetworkCheck]] = field(default=lambda options: [])
    min_images: int = 2
    prompts: bool = False
    stats_files: bool = False
    cli_aliases: tuple[str, ...] = ()  # other names of its ``t2ibench score`` verb
    extra_columns: tuple[Column, ...] = ()
    estimand: str = ""

    def columns(self) -> tuple[Column, ...]:
        main = Column(self.name, self.higher_is_better, self.against, self.per_image, self.gate, self.label,
                      self.estimand)
        return (main, *self.extra_columns)

    def parse_options(self, options: Any) -> Frozen:
        if isinstance(options, self.options):
            return options
        data = options.model_dump() if isinstance(options, Frozen) else (options or {})
        return self.options.model_validate(data)


def no_npz(against: str) -> str:
    """Options validator of ``against`` for metrics that need images: an .npz holds only FID statistics."""
    if against.lower().endswith(".npz"):
        raise ValueError("an .npz holds only FID statistics (mu, sigma); this metric needs a "
                         "folder of images or 'reference'")
    return against


METRICS: Registry[MetricSpec] = Registry("metric")

_BUILTIN = (  # each module registers its spec on import
    "t2ibench.metrics.fid",
    "t2ibench.metrics.kid",
    "t2ibench.metrics.cmmd",
    "t2ibench.metrics.clipscore",
    "t2ibench.metrics.perceptual",
    "t2ibench.metrics.hpsv2",
    "t2ibench.metrics.pickscore",
    "t2ibench.metrics.image_reward",
    "t2ibench.metrics.aesthetic",
    "t2ibench.metrics.fd_dinov2",
)

for _module in _BUILTIN:
    importlib.import_module(_module)


def columns() -> dict[str, Column]:
    """Every registered results column by name (metrics and their extra columns)."""
    return {c.name: c for _, spec in METRICS.items() for c in spec.columns()}


def column(name: str) -> Column | None:
    return columns().get(name)


def higher_is_better() -> dict[str, bool]:
    return {name: c.higher_is_better for name, c in columns().items()}


def metric_of_column(name: str) -> str | None:
    """The metric that writes a column (``lpips_diversity`` → ``lpips``)."""
    for metric, spec in METRICS.items():
        if any(c.name == name for c in spec.columns()):
            return metric
    return None
