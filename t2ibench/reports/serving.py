"""Serving figures: what one load level achieved, read from its recorded requests, and the highest rate at
which a config family holds its SLO.

A level's requests are every request it scheduled (warm-up excluded: it is never recorded). An *ok* request
answered with its image (``error_kind == ''``); any other ended as a classified error. Latency runs from the
request's *scheduled* send (``latency_ms``), so a request that waited in a queue, or for the client's cap, is
charged that wait.

- the latency percentiles, max and means are over the **ok** requests (an error has no answer time to rank);
- ``slo_attainment`` is over **all** scheduled requests: the share answered ok within their SLO (an error, a
  503 among them, is a miss), so failing fast never raises it; a request's own ``slo_ms`` (a trace's) wins
  over the level's; requests with no SLO at all are left out of it;
- ``goodput`` is the ok-within-SLO requests per second of the level's duration; ``achieved_rate`` the ok
  images per second.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Iterable, Mapping

import numpy as np

PERCENTILES = {"latency_ms_p50": 50, "latency_ms_p90": 90, "latency_ms_p95": 95, "latency_ms_p99": 99}
SERVING_COLUMNS = ["offered_rate", "achieved_rate", "latency_ms_p90", "latency_ms_p99", "latency_ms_max",
                   "queue_ms_mean", "compute_ms_mean", "slo_ms", "slo_attainment", "goodput", "error_rate",
                   "rejected", "mean_batch"]
"""The contract's serving columns of results.csv, in its order."""
SERVING_EXTRAS = ["errors_by_kind", "latency_ms_p99_ci_low", "latency_ms_p99_ci_high", "capped", "slo_max_rate"]
"""More serving columns: errors by kind (JSON), p99's 95% CI, requests that waited for the client's cap, and the
highest offered rate of the row's family whose attainment met the target."""
CI_LEVEL = 0.95
ATTAINMENT = 0.99  # the default target of ``max_rate_within_slo``, as in MLPerf's Server scenario


def _nan(v) -> float:
    return math.nan if v is None else float(v)


def _mean(values: list) -> float:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


def quantile_ci(sample: Iterable[float], q: float, level: float = CI_LEVEL) -> tuple[float, float]:
    """A distribution-free CI of the ``q`` quantile (0 < q < 1): the order statistics ``(x_(l), x_(u))`` with
    ``l`` the largest and ``u`` the smallest index such that ``P(B < l) <= (1 - level) / 2`` and
    ``P(B >= u) <= (1 - level) / 2``, where ``B ~ Binomial(n, q)`` counts the samples below the true quantile;
    its coverage is at least ``level`` for any continuous distribution. NaNs when ``n`` is too small (a p99
    needs n >= 368 at 95%)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(list(sample), np.float64))
    n = len(x)
    alpha = (1 - level) / 2
    if n == 0:
        return math.nan, math.nan
    k = np.arange(n + 1)
    cdf = binom.cdf(k, n, q)  # cdf[j] = P(B <= j)
    lower = np.nonzero(cdf <= alpha)[0]  # P(B < l) = cdf[l - 1] <= alpha
    upper = np.nonzero(cdf >= 1 - alpha)[0]  # P(B >= u) = 1 - cdf[u - 1] <= alpha
    if not len(lower) or not len(upper):
        return math.nan, math.nan
    lo_index, hi_index = int(lower[-1]) + 1, int(upper[0]) + 1  # 1-indexed order statistics
    if lo_index < 1 or hi_index > n:
        return math.nan, math.nan
    return float(x[lo_index - 1]), float(x[hi_index - 1])


def level_figures(requests: list[Mapping], *, duration_s: float, offered_rate: float | None,
                  slo_ms: float | None) -> dict:
    """The serving figures of one level from its requests (``RequestRow`` fields, as ``store.requests`` reads
    them); see the module's docstring for what each counts. NaN where a figure is undefined (no ok request, no
    SLO, no Server-Timing)."""
    n = len(requests)
    ok = [r for r in requests if not r.get("error_kind")]
    latencies = np.asarray([float(r["latency_ms"]) for r in ok], np.float64)
    out: dict = {"offered_rate": _nan(offered_rate)}
    rate = (lambda count: count / duration_s) if duration_s and duration_s > 0 else (lambda count: math.nan)
    out["achieved_rate"] = rate(len(ok))
    for column, p in PERCENTILES.items():
        out[column] = float(np.percentile(latencies, p)) if len(latencies) else math.nan
    out["latency_ms_max"] = float(latencies.max()) if len(latencies) else math.nan
    out["latency_ms_mean"] = float(latencies.mean()) if len(latencies) else math.nan
    out["queue_ms_mean"] = _mean([r.get("queue_ms") for r in ok])
    out["compute_ms_mean"] = _mean([r.get("compute_ms") for r in ok])
    slos = [r.get("slo_ms") if r.get("slo_ms") is not None else slo_ms for r in requests]
    judged = [(r, s) for r, s in zip(requests, slos) if s is not None]
    within = sum(1 for r, s in judged if not r.get("error_kind") and float(r["latency_ms"]) <= float(s))
    distinct = {float(s) for s in slos if s is not None}
    out["slo_ms"] = _nan(slo_ms) if slo_ms is not None else (distinct.pop() if len(distinct) == 1 else math.nan)
    out["n_judged"], out["n_within"] = len(judged), within  # for compare's tests of attainment and goodput
    out["slo_attainment"] = within / len(judged) if judged else math.nan
    out["goodput"] = rate(within) if judged else math.nan
    out["error_rate"] = (n - len(ok)) / n if n else math.nan
    kinds = Counter(r["error_kind"] for r in requests if r.get("error_kind"))
    out["rejected"] = kinds.get("rejected", 0)
    out["errors_by_kind"] = json.dumps(dict(sorted(kinds.items())))
    out["mean_batch"] = _mean([r.get("batch") for r in ok])
    for column, q in (("latency_ms_p50", 0.5), ("latency_ms_p99", 0.99)):
        out[f"{column}_ci_low"], out[f"{column}_ci_high"] = quantile_ci(latencies, q)
    return out


def final_levels(store) -> dict[str, dict]:
    """Each config's reported level (``final``; the last one when several are), by config_id."""
    out: dict[str, dict] = {}
    for level in store.levels():
        if level["final"]:
            out[level["config_id"]] = level
    return out


def config_figures(store) -> dict[str, dict]:
    """``level_figures`` of every config's final level, by config_id, plus ``capped`` and the ok latencies
    (``latency_samples``: for the p50 statistics every report shares)."""
    from t2ibench.suites.scenario import LOAD_KINDS

    slo_of = {c["config_id"]: (c["knobs"].get("scenario") or {}) for c in store.configs()}
    out = {}
    for cid, level in final_levels(store).items():
        scenario = slo_of.get(cid, {})
        if scenario.get("kind") not in LOAD_KINDS:
            continue
        requests = [r for r in store.requests(cid) if r["level"] == level["level"]]
        slo = scenario.get("slo_ms")
        if slo is None and isinstance(scenario.get("search"), dict):
            slo = scenario["search"].get("slo_ms")
        figures = level_figures(requests, duration_s=level["duration_s"], offered_rate=level["offered_rate"],
                                slo_ms=slo)
        figures["capped"] = level.get("capped") or 0
        figures["latency_samples"] = [float(r["latency_ms"]) for r in requests if not r.get("error_kind")]
        figures["requests"] = requests
        figures["duration_s"] = level["duration_s"]
        out[cid] = figures
    return out


def scenario_label(value) -> str:
    """A scenario knob (its stored mapping) as ``suites.scenario.label`` names it, defaults left out."""
    from pydantic import TypeAdapter, ValidationError

    from t2ibench.suites.scenario import Scenario, label, scenario_input

    if value is None:
        return label(None)
    try:
        return label(TypeAdapter(Scenario).validate_python(scenario_input(value)))
    except (ValidationError, ValueError):
        return label(value) if isinstance(value, dict) else str(value)


def family_key(row: Mapping) -> tuple:
    """What a sweep's levels share: the model and every knob but the scenario's ``rate``. From the row's
    ``knobs`` mapping when it has one, else from its knob columns (the scenario as its label)."""
    knobs = row.get("knobs")
    if isinstance(knobs, Mapping):
        scenario = dict(knobs.get("scenario") or {})
        scenario.pop("rate", None)
        rest = {k: v for k, v in knobs.items() if k != "scenario"}
        return (row.get("model"), json.dumps(rest, sort_keys=True, default=str),
                json.dumps(scenario, sort_keys=True, default=str))
    from t2ibench.suites.knobs import KNOB_NAMES

    scenario = " ".join(w for w in str(row.get("scenario", "")).split() if not w.startswith("rate="))
    return (row.get("model"), *(json.dumps(row.get(k), default=str) for k in KNOB_NAMES if k != "scenario"),
            scenario)


def _search_target(row: Mapping) -> float | None:
    """A search config's own attainment target; None for any other row."""
    knobs = row.get("knobs")
    if isinstance(knobs, Mapping):
        search = (knobs.get("scenario") or {}).get("search")
        return float(search.get("attainment", ATTAINMENT)) if isinstance(search, Mapping) else None
    return ATTAINMENT if "search=" in str(row.get("scenario", "")) else None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def max_rate_within_slo(rows: list[Mapping], attainment: float = ATTAINMENT) -> dict[str, float]:
    """Per row (by config_id), the highest ``offered_rate`` of its family (``family_key``: configs identical
    but for the scenario's rate) whose ``slo_attainment`` is at least ``attainment``; NaN when no level of the
    family meets it. A search config is a family of its own: its final level (the best passing probe) is its
    answer, judged against its own ``search.attainment``."""
    best: dict[tuple, float] = {}
    keys = {}
    for row in rows:
        search = _search_target(row)
        key = ("search", row["config_id"]) if search is not None else family_key(row)
        keys[row["config_id"]] = key
        target = search if search is not None else attainment
        rate, share = row.get("offered_rate"), row.get("slo_attainment")
        if _finite(rate) and _finite(share) and share >= target:
            best[key] = max(best.get(key, -math.inf), float(rate))
    return {cid: best.get(key, math.nan) for cid, key in keys.items()}


def is_serving(row: Mapping) -> bool:
    """Whether a results row is a load-scenario config (its ``scenario`` label names a load kind), or has
    serving figures."""
    from t2ibench.suites.scenario import LOAD_KINDS

    kind = str(row.get("scenario") or "").split(" ")[0]
    return kind in LOAD_KINDS or _finite(row.get("achieved_rate"))


def families(rows: list[Mapping]) -> list[list[Mapping]]:
    """The serving rows grouped by ``family_key`` (a search config alone), in first-seen order."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        if is_serving(row):
            key = ("search", row["config_id"]) if _search_target(row) is not None else family_key(row)
            groups.setdefault(key, []).append(row)
    return list(groups.values())


def family_name(group: list[Mapping]) -> str:
    """A family's name: its first config's name without the ``rate=`` word (the level)."""
    words = [w for w in str(group[0].get("config", "")).split() if not w.startswith("rate=")]
    return " ".join(words) or " ".join(w for w in str(group[0].get("scenario", "")).split()
                                       if not w.startswith("rate="))


def slo_lines(rows: list[Mapping], attainment: float = ATTAINMENT) -> list[str]:
    """One sentence per config family with an SLO: the highest offered rate at which it held, from the sweep
    (``slo_max_rate``), e.g. ``steps=2 scenario=server slo_ms=500: 2 req/s within the SLO (500 ms, ≥ 99% of
    requests)``."""
    out = []
    for group in families(rows):
        judged = [r for r in group if _finite(r.get("slo_attainment"))]
        if not judged:
            continue
        slo = next((r["slo_ms"] for r in judged if _finite(r.get("slo_ms"))), None)
        target = _search_target(group[0]) or attainment
        rate = group[0].get("slo_max_rate")
        where = f"SLO {slo:g} ms" if slo is not None else "SLO"
        tried = ", ".join(f"{r['offered_rate']:g}" for r in judged if _finite(r.get("offered_rate")))
        if not tried:  # closed loop or offline: no offered rate to sweep; say how the SLO held at each level
            out += [f"{r.get('config')}: {r['slo_attainment']:.0%} of requests within the {where}, goodput "
                    f"{r.get('goodput', math.nan):.3g} req/s" for r in judged]
        elif _finite(rate):
            out.append(f"{family_name(group)}: {rate:g} req/s within the {where} (≥ {target:.0%} of requests)")
        else:
            out.append(f"{family_name(group)}: no rate within the {where} (≥ {target:.0%} of requests; tried "
                       f"{tried or 'none'} req/s)")
    return out


def has_levels(rows: list[Mapping]) -> bool:
    """Whether some row reports a measured load level (the reports' Serving section shows only then)."""
    return any(is_serving(r) and _finite(r.get("error_rate")) for r in rows)
