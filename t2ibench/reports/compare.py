"""Direction-aware regression check between two runs (``t2ibench compare BASE CAND``).

A figure is flagged only when its change is both beyond its gate and statistically significant:
- latency figures (p50, p95, mean, images/s): a 99% percentile bootstrap CI of the ratio candidate ÷
  base of the figure's statistic, resampling each side's latency samples (every measured call and
  repeat); significant when the CI excludes 1 (p95 needs at least 20 samples a side);
- per-image metrics (clip_score, lpips): the per-image differences paired by (prompt, seed), and a
  95% CI of their mean over prompts (``bootstrap.mean_ci``: a jackknife that deletes whole prompts,
  the same unit and code as the metric rows' CIs); significant when it excludes 0;
- set metrics (fid, kid, cmmd, lpips_diversity; or any metric without per-image values): their
  stored 95% CIs (over prompts) must not overlap, a conservative test, since the features are not
  kept in a results file;
- peak memory: a single deterministic reading per config, so the gate alone decides;
- serving rows (load scenarios), only between levels of the same offered rate: p50, p95, mean and p99
  latency of the ok requests as above (p99 needs at least 100 a side); ``slo_attainment``: a 95% Newcombe
  score CI of the difference of the two shares; ``goodput``: a 95% Katz CI of the ratio of the two shares
  within the SLO, times the ratio of requests scheduled per second. A serving row is never compared with a
  single-stream one (a user error).
An improvement is never a failure.

A comparison that compares nothing (no config in common, or none with results on both sides) is a
user error, so that a CI gate never passes silently. The environments are compared too: a
difference in ``SETUP_KEYS`` (executor, actors, threads, device, GPU…) means the timings are not
comparable, a difference in ``VERSION_KEYS`` may explain a change; both are warned about. Configs
whose timings look unstable on either side (``latency.instability``) are warned about as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from t2ibench.base import plural
from t2ibench.errors import UserError
from t2ibench.metrics.bootstrap import mean_ci
from t2ibench.reports.export import MEMORY_FIGURES, ConfigSummary, MetricSummary, RunSummary, ServingSummary
from t2ibench.reports.latency import LATENCY_FIGURES, STATISTIC, instability, scale, unstable_note

N_RESAMPLES = 2000
LEVEL = 0.95
LATENCY_LEVEL = 0.99  # timings on shared machines come in bursts; a stricter test keeps CI from crying wolf
MIN_SAMPLES_P95 = 20  # per side, to test a change in p95 latency
MIN_SAMPLES_P99 = 100  # per side, to test a change in p99 latency
# environment keys whose difference makes timings not comparable (the machine and how it was used)
SETUP_KEYS = ("executor", "actors", "share_gpus", "torch_threads", "device", "gpu", "cpu", "cpu_count")
# versions: a difference may be what is being tested, and may explain a change in timings
VERSION_KEYS = ("torch", "cuda", "cudnn", "driver", "diffusers", "transformers", "t2ibench", "python")
INFO_KEYS = ("git_commit", "t2ibench_git_commit")  # listed when they differ; a commit is what CI compares
ENVIRONMENT_KEYS = SETUP_KEYS + VERSION_KEYS + INFO_KEYS
FIGURE_GATES: dict[str, float | str] = {
    "latency_ms_p50": "5%", "latency_ms_p95": "10%", "latency_ms_mean": "5%", "images_per_s": "5%",
    "peak_vram_mb": "5%", "peak_rss_mb": "10%",
}
SERVING_GATES: dict[str, float | str] = {"latency_ms_p99": "10%", "goodput": "5%", "slo_attainment": 0.01}
SERVING_LATENCY = ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean")  # images/s: goodput says it
P99: Callable[..., np.ndarray] = lambda x, axis=None: np.percentile(x, 99, axis=axis)  # noqa: E731
RATE_TOLERANCE = 1e-6  # relative: two levels offered the same rate


def default_gates() -> dict[str, float | str]:
    """The figures' gates, then each registered metric column's own."""
    from t2ibench.metrics.registry import columns

    return {**FIGURE_GATES, **SERVING_GATES, **{name: c.gate for name, c in columns().items()}}


def _higher_is_better(name: str) -> bool:
    from t2ibench.metrics.registry import column

    c = column(name)
    return c.higher_is_better if c is not None else True


@dataclass(frozen=True)
class Gate:
    """How much worse a figure may get: ``5%`` (relative to the base value) or ``0.5`` (absolute)."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str | float, where: str) -> Gate:
        s = str(text).strip()
        relative = s.endswith("%")
        try:
            value = float(s[:-1] if relative else s)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise UserError(f"{where}: gate '{text}' must be a non-negative number, or a percentage like 5%")
        return cls(value / 100 if relative else value, relative)

    def exceeded(self, base: float, change: float) -> bool:
        return abs(change) > (abs(base) * self.value if self.relative else self.value)

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


def gate_names() -> list[str]:
    from t2ibench.metrics.registry import columns

    return [*LATENCY_FIGURES, *MEMORY_FIGURES, *SERVING_GATES, *columns()]


def parse_gate_options(specs: list[str]) -> dict[str, Gate]:
    """``["latency_ms_p50=5%", "clip_score=0.5"]`` → gates; bad syntax or names are user errors."""
    from t2ibench.registry import did_you_mean

    gates = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise UserError(f"--gate '{spec}': expected METRIC=VALUE, e.g. latency_ms_p50=5% or clip_score=0.5")
        if name not in gate_names():
            raise UserError(f"--gate '{spec}': unknown figure '{name}'{did_you_mean(name, gate_names())}; "
                            f"choose from {', '.join(gate_names())}")
        gates[name] = Gate.parse(value, f"--gate {name}")
    return gates


@dataclass(frozen=True)
class Row:
    config: str
    config_id: str
    figure: str
    base: float
    cand: float
    higher_is_better: bool
    gate: Gate
    test: str                         # how significance was judged
    ci: tuple[float, float] | None    # of the ratio (latency) or of the mean paired difference (metrics)
    significant: bool

    @property
    def delta(self) -> float:
        return self.cand - self.base

    @property
    def relative(self) -> float:
        return self.delta / self.base if self.base else math.nan

    @property
    def verdict(self) -> str:
        if not self.gate.exceeded(self.base, self.delta):
            return "within gate"
        if not self.significant:
            return "not significant"
        return "improvement" if (self.delta > 0) == self.higher_is_better else "regression"


@dataclass
class Comparison:
    base: RunSummary
    cand: RunSummary
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # only the keys that differ
    unstable: dict[str, dict[str, str]] = field(default_factory=dict)  # "base"/"candidate" → config → why

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "regression"]

    @property
    def timings_comparable(self) -> bool:
        return not any(k in SETUP_KEYS for k in self.environment)

    @property
    def warnings(self) -> list[str]:
        """Environment differences and unstable timings, one sentence each."""
        out = []
        setup = [f"{k} {_text(b)} → {_text(c)}" for k, (b, c) in self.environment.items() if k in SETUP_KEYS]
        if setup:
            out.append(f"environments differ: {', '.join(setup)} (timings not comparable)")
        versions = [f"{k} {_text(b)} → {_text(c)}" for k, (b, c) in self.environment.items() if k in VERSION_KEYS]
        if versions:
            out.append(f"versions differ: {', '.join(versions)} (a change in timings may come from them)")
        base, cand = self.unstable.get("base", {}), self.unstable.get("candidate", {})
        if base == cand:  # the same run on both sides, say
            out.append(unstable_note(base, "both runs"))
        else:
            out += [unstable_note(base, "the base"), unstable_note(cand, "the candidate")]
        return [w for w in out if w]

    def to_json(self) -> dict:
        return {
            "base": self.base.source, "candidate": self.cand.source, "regression": bool(self.regressions),
            "rows": [asdict(r) | {"gate": str(r.gate), "delta": r.delta, "relative": _nan_none(r.relative),
                                  "verdict": r.verdict} for r in self.rows],
            "notes": self.notes,
            "warnings": self.warnings,
            "timings_comparable": self.timings_comparable,
            "environment": {k: {"base": b, "candidate": c} for k, (b, c) in self.environment.items()},
            "unstable": self.unstable,
        }


def _text(v: Any) -> str:
    return "–" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def _nan_none(v: float) -> float | None:
    return None if math.isnan(v) else v


def _bootstrap_ci(data: tuple[np.ndarray, ...], statistic: Callable, seed: int,
                  level: float = LEVEL) -> tuple[float, float] | None:
    """Percentile bootstrap CI of ``statistic(*data, axis)``; None with fewer than 2 values on a side."""
    from scipy.stats import bootstrap

    if any(len(d) < 2 for d in data):
        return None
    if all(np.ptp(d) == 0 for d in data):  # nothing to resample: the statistic is exact
        value = float(statistic(*data, axis=-1))
        return value, value
    res = bootstrap(data, statistic, n_resamples=N_RESAMPLES, confidence_level=level, method="percentile",
                    vectorized=True, rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def _ratio_ci(a: np.ndarray, b: np.ndarray, stat: Callable, seed: int) -> tuple[float, float] | None:
    """CI of ``stat(b) / stat(a)``, resampled in an order that does not depend on which run is the base,
    so that ``compare A B`` and ``compare B A`` mirror each other (the CI of the inverse ratio is the
    inverse CI, and a change is significant both ways or neither)."""
    swap = a.tobytes() > b.tobytes()
    first, second = (b, a) if swap else (a, b)
    ci = _bootstrap_ci((first, second), lambda x, y, axis: stat(y, axis=axis) / stat(x, axis=axis), seed,
                       LATENCY_LEVEL)
    return (1 / ci[1], 1 / ci[0]) if swap and ci is not None else ci


def latency_row(config: str, config_id: str, figure: str, base: ConfigSummary, cand: ConfigSummary, gate: Gate,
                seed: int = 0) -> Row | None:
    """Point estimates and ratio CI from the latency samples (equal to results.csv when repeats = 1)."""
    stat = P99 if figure == "latency_ms_p99" else STATISTIC[figure]
    a, b = np.asarray(base.latency_samples, float), np.asarray(cand.latency_samples, float)
    if not len(a) or not len(b):
        return None
    scale_a, scale_b = scale(figure, base.batch_size), scale(figure, cand.batch_size)
    test = f"bootstrap ratio ({len(a)} vs {len(b)} samples)"
    tail = {"latency_ms_p95": ("p95", MIN_SAMPLES_P95), "latency_ms_p99": ("p99", MIN_SAMPLES_P99)}.get(figure)
    if tail and min(len(a), len(b)) < tail[1]:
        # a 95th percentile of fewer than 20 samples is its largest value or so: its bootstrap CI is
        # far too narrow, and one scheduling hiccup would read as a regression (a 99th: 100)
        ci, test = None, f"too few samples for a {tail[0]} test ({min(len(a), len(b))} < {tail[1]})"
    else:
        ci = _ratio_ci(a, b, stat, seed)
    if ci is not None:
        ci = (ci[0] * scale_b / scale_a, ci[1] * scale_b / scale_a)
    significant = ci is not None and (ci[0] > 1 or ci[1] < 1)
    return Row(config, config_id, figure, float(stat(a, axis=None)) * scale_a, float(stat(b, axis=None)) * scale_b,
               figure == "images_per_s", gate, test, ci, significant)


def metric_row(config: str, config_id: str, name: str, base: MetricSummary, cand: MetricSummary, gate: Gate,
               seed: int = 0) -> Row | None:
    if base.value is None or cand.value is None:
        return None
    keys = sorted(base.per_image.keys() & cand.per_image.keys())
    if keys:
        d = np.array([cand.per_image[k] - base.per_image[k] for k in keys])
        prompts = [k.rsplit(":", 1)[0] for k in keys]  # keys are "prompt_id:seed"
        lo, hi = mean_ci(d, prompts, seed=seed)
        ci = None if math.isnan(lo) else (lo, hi)
        significant = ci is not None and (ci[0] > 0 or ci[1] < 0)
        test = f"paired jackknife over prompts ({plural(len(keys), 'image')}, {plural(len(set(prompts)), 'prompt')})"
    elif None not in (base.lo, base.hi, cand.lo, cand.hi):
        ci = None
        significant = cand.lo > base.hi or cand.hi < base.lo
        test = "95% CIs do not overlap" if significant else "95% CIs overlap"
    else:
        ci, significant, test = None, False, "no CI"
    return Row(config, config_id, name, base.value, cand.value, _higher_is_better(name), gate, test, ci,
               significant)


def memory_row(config: str, config_id: str, figure: str, base: ConfigSummary, cand: ConfigSummary,
               gate: Gate) -> Row | None:
    va, vb = base.figures.get(figure), cand.figures.get(figure)
    if va is None or vb is None:
        return None
    return Row(config, config_id, figure, va, vb, False, gate, "single reading", None, True)


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``k / n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def attainment_row(config: str, config_id: str, base: ServingSummary, cand: ServingSummary,
                   gate: Gate) -> Row | None:
    """The change in SLO attainment, with Newcombe's hybrid score CI (95%) of the difference of the shares."""
    from scipy.stats import norm

    if not base.n_judged or not cand.n_judged:
        return None
    z = float(norm.ppf(1 - (1 - LEVEL) / 2))
    p1, p2 = base.n_within / base.n_judged, cand.n_within / cand.n_judged
    l1, u1 = _wilson(base.n_within, base.n_judged, z)
    l2, u2 = _wilson(cand.n_within, cand.n_judged, z)
    d = p2 - p1
    ci = (d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2))
    test = f"Newcombe score CI of the difference ({base.n_judged} vs {cand.n_judged} requests)"
    return Row(config, config_id, "slo_attainment", p1, p2, True, gate, test, ci, ci[0] > 0 or ci[1] < 0)


def goodput_row(config: str, config_id: str, base: ServingSummary, cand: ServingSummary, gate: Gate) -> Row | None:
    """The change in goodput (requests/s within the SLO): a 95% Katz CI of the ratio of the shares within the
    SLO (0.5 added to each count when one is 0), times the ratio of requests judged per second."""
    from scipy.stats import norm

    if not base.n_judged or not cand.n_judged or base.duration_s <= 0 or cand.duration_s <= 0:
        return None
    g1, g2 = base.n_within / base.duration_s, cand.n_within / cand.duration_s
    x1, n1, x2, n2 = base.n_within, base.n_judged, cand.n_within, cand.n_judged
    if x1 == 0 or x2 == 0:
        x1, n1, x2, n2 = x1 + 0.5, n1 + 0.5, x2 + 0.5, n2 + 0.5
    z = float(norm.ppf(1 - (1 - LEVEL) / 2))
    log_ratio = math.log((x2 / n2) / (x1 / n1))
    se = math.sqrt(max(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2, 0.0))
    factor = (cand.n_judged / cand.duration_s) / (base.n_judged / base.duration_s)
    ci = (math.exp(log_ratio - z * se) * factor, math.exp(log_ratio + z * se) * factor)
    test = f"ratio of shares within the SLO, Katz CI ({base.n_judged} vs {cand.n_judged} requests)"
    return Row(config, config_id, "goodput", g1, g2, True, gate, test, ci, ci[0] > 1 or ci[1] < 1)


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


def _served_rate(summary: ConfigSummary) -> float | None:
    return summary.serving.offered_rate if summary.serving is not None else None


def serving_rows(b: ConfigSummary, c: ConfigSummary, gates: dict[str, Gate], seed: int,
                 notes: list[str]) -> list[Row | None]:
    """A serving pair's latency, p99, attainment and goodput rows, when both levels offered the same rate."""
    if b.serving is None or c.serving is None:
        side = "base" if b.serving is None else "candidate"
        notes.append(f"config '{c.name}': no measured load level in the {side}; its serving figures are not compared")
        return []
    rate_b, rate_c = _served_rate(b), _served_rate(c)
    if (rate_b is None) != (rate_c is None) or (rate_b is not None and not math.isclose(
            rate_b, rate_c, rel_tol=RATE_TOLERANCE)):
        notes.append(f"config '{c.name}': offered rate {_num(rate_b)} → {_num(rate_c)} req/s; its latency, "
                     "goodput and attainment are compared only at a fixed rate")
        return []
    args = (c.name, c.config_id)
    rows = [latency_row(*args, f, b, c, gates[f], seed) for f in SERVING_LATENCY]
    rows.append(latency_row(*args, "latency_ms_p99", b, c, gates["latency_ms_p99"], seed))
    rows.append(goodput_row(*args, b.serving, c.serving, gates["goodput"]))
    rows.append(attainment_row(*args, b.serving, c.serving, gates["slo_attainment"]))
    return rows


def _refuse_mixed(pairs: list[tuple[ConfigSummary, ConfigSummary]]) -> None:
    """A serving row against a single-stream one measures two different things: a user error."""
    from t2ibench.reports.serving import scenario_label

    for b, c in pairs:
        if b.is_serving != c.is_serving:
            raise UserError(f"config '{c.name}': base is {scenario_label(b.knobs.get('scenario'))}, candidate is "
                            f"{scenario_label(c.knobs.get('scenario'))}: a serving row cannot be compared with a "
                            "non-serving one (latency under load is not a single call's); compare runs of the same "
                            "scenario")


def match_configs(base: RunSummary, cand: RunSummary, notes: list[str]) -> list[tuple[ConfigSummary, ConfigSummary]]:
    """Pairs by config_id, then by name (with a note naming the knobs that differ)."""
    by_id = {c.config_id: c for c in cand.configs}
    pairs = [(b, by_id[b.config_id]) for b in base.configs if b.config_id in by_id]
    taken = {b.config_id for b, _ in pairs}
    left = [c for c in cand.configs if c.config_id not in taken]
    for b in base.configs:
        if b.config_id in taken:
            continue
        c = next((c for c in left if c.name == b.name), None)
        if c is None:
            notes.append(f"config '{b.name}' ({b.config_id}) is only in the base")
            continue
        left.remove(c)
        changed = [f"{k} {b.knobs.get(k)} → {c.knobs.get(k)}" for k in sorted(b.knobs.keys() | c.knobs.keys())
                   if b.knobs.get(k) != c.knobs.get(k)]
        if b.model != c.model:
            changed.insert(0, f"model {b.model} → {c.model}")
        notes.append(f"config '{b.name}' matched by name ({b.config_id} → {c.config_id}): "
                     + (", ".join(changed) or "same knobs"))
        pairs.append((b, c))
    notes.extend(f"config '{c.name}' ({c.config_id}) is only in the candidate" for c in left)
    return pairs


def compare(base: RunSummary, cand: RunSummary, gates: dict[str, Gate] | None = None, seed: int = 0) -> Comparison:
    """Compare every latency, memory and metric figure of the configs the two runs share."""
    merged = {k: Gate.parse(v, "default gates") for k, v in default_gates().items()}
    for summary in (base, cand):
        merged.update({k: Gate.parse(v, f"suite '{summary.suite}' gates") for k, v in summary.gates.items()})
    merged.update(gates or {})
    result = Comparison(base, cand)
    random_metrics: set[str] = set()
    pairs = match_configs(base, cand, result.notes)
    _refuse_mixed(pairs)
    for b, c in pairs:
        args = (c.name, c.config_id)
        if b.is_serving:
            rows = serving_rows(b, c, merged, seed, result.notes)
        else:
            rows = [latency_row(*args, f, b, c, merged[f], seed) for f in LATENCY_FIGURES]
        rows += [memory_row(*args, f, b, c, merged[f]) for f in MEMORY_FIGURES]
        for name in [m for m in b.metrics if m in c.metrics]:
            gate = merged.get(name, Gate(0.05, relative=True))
            rows.append(metric_row(*args, name, b.metrics[name], c.metrics[name], gate, seed))
            if b.metrics[name].random_weights or c.metrics[name].random_weights:
                random_metrics.add(name)
        result.rows += [r for r in rows if r is not None]
    if random_metrics:
        result.notes.append(f"{', '.join(sorted(random_metrics))}: random weights, values not meaningful")
    if not result.rows:
        why = [n for n in result.notes if "compared only at a fixed rate" in n or "no measured load level" in n]
        raise UserError(_nothing_compared(base, cand, pairs) + "".join(f"; {n}" for n in why))
    for b, c in pairs:
        for side, config in (("base", b), ("candidate", c)):
            if not config.latency_samples and (b.latency_samples or c.latency_samples) and not config.is_serving:
                result.notes.append(f"config '{config.name}': no timed call in the {side} (status {config.status}); "
                                    "its latency is not compared")
    for side, summary in (("base", base), ("candidate", cand)):
        shared = {b.config_id if side == "base" else c.config_id for b, c in pairs}
        result.unstable[side] = {c.name: why for c in summary.configs if c.config_id in shared
                                 and not c.is_serving and (why := instability(c.latency_samples))}
    env_b, env_c = base.environment or {}, cand.environment or {}
    result.environment = {k: (env_b.get(k), env_c.get(k)) for k in ENVIRONMENT_KEYS if env_b.get(k) != env_c.get(k)
                          and (k not in _EXECUTOR_FACTS or ("executor" in env_b and "executor" in env_c))}
    for side, env in (("base", env_b), ("candidate", env_c)):
        if "executor" not in env:
            result.notes.append(f"the {side}'s environment does not say which executor, actors and threads timed it "
                                "(exported by an older t2ibench); re-export it to compare them")
    return result


_EXECUTOR_FACTS = ("executor", "actors", "share_gpus")  # unknown in a summary exported before they were recorded


def _nothing_compared(base: RunSummary, cand: RunSummary, pairs: list) -> str:
    def names(s: RunSummary) -> str:
        shown = [c.name for c in s.configs[:3]]
        return (", ".join(shown) + (f" and {len(s.configs) - 3} more" if len(s.configs) > 3 else "")) or "none"

    if not pairs:
        return (f"nothing compared: '{base.source}' and '{cand.source}' share no config (base: {names(base)}; "
                f"candidate: {names(cand)}); compare runs of the same suite")
    statuses = ", ".join(f"{c.name} {c.status}" for _, c in pairs[:3])
    return (f"nothing compared: none of the {len(pairs)} configs shared by '{base.source}' and '{cand.source}' has "
            f"results on both sides (candidate: {statuses})")
