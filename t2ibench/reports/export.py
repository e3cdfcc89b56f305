"""A run's summary: what ``compare`` needs, read from a run directory or a versioned ``results.json``.

``t2ibench export RUN_DIR -o results.json`` writes it so that a baseline can be committed to a
repository: the environment (with the executor facts of ``run_environment``), the suite's name and
gates, and per config its knobs, the
results.csv figures, every measured latency sample (warm-up excluded, all repeats) and each
metric with its CI and, where the metric has them, per-image values keyed ``"prompt_id:seed"``.
A load-scenario config's samples are the latencies of its final level's ok requests, and its
``serving`` holds that level's offered rate, duration and SLO counts (``ServingSummary``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError
from t2ibench.reports.latency import LATENCY_FIGURES

RESULTS_SCHEMA_VERSION = 1
RESULTS_KIND = "t2ibench-results"
MEMORY_FIGURES = ("peak_vram_mb", "peak_rss_mb")


@dataclass(frozen=True)
class MetricSummary:
    value: float | None
    lo: float | None
    hi: float | None
    n: int
    random_weights: bool
    per_image: dict[str, float] = field(default_factory=dict)  # "prompt_id:seed" -> value


@dataclass(frozen=True)
class ServingSummary:
    """A load level's figures for ``compare``: what it offered, how long it ran, and its SLO counts (requests
    with an SLO, and those answered ok within it)."""

    offered_rate: float | None
    duration_s: float
    slo_ms: float | None
    n_scheduled: int
    n_judged: int
    n_within: int


@dataclass(frozen=True)
class ConfigSummary:
    config_id: str
    name: str
    model: str
    knobs: dict[str, Any]
    status: str
    figures: dict[str, float | None]  # results.csv figures; None where undefined
    latency_samples: list[float]      # ms, one per measured call and repeat
    metrics: dict[str, MetricSummary]
    serving: ServingSummary | None = None  # a load-scenario config's final level (None for any other)

    @property
    def batch_size(self) -> int:
        return int(self.knobs.get("batch_size") or 1)

    @property
    def is_serving(self) -> bool:
        """Whether the config is a load scenario (its requests went over HTTP)."""
        from t2ibench.suites.scenario import LOAD_KINDS

        return self.serving is not None or (self.knobs.get("scenario") or {}).get("kind") in LOAD_KINDS


@dataclass(frozen=True)
class RunSummary:
    source: str
    suite: str
    gates: dict[str, float | str]
    environment: dict[str, Any]
    configs: list[ConfigSummary]


def _finite(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def run_environment(environment: dict, executor: dict | None, actors: list[dict] | None) -> dict:
    """The environment the calls were timed in: the store's environment plus ``executor`` (local | ray),
    ``actors`` (Ray actors at once in the latest session; None for a local run) and ``share_gpus``; for a
    Ray run, ``torch_threads`` and ``gpu`` are the actors' (the driver's own do not time anything)."""
    executor = executor or {}
    out = {**environment, "executor": executor.get("name") or "local", "actors": None,
           "share_gpus": bool(executor.get("share_gpus"))}
    latest = [a for a in actors or [] if a.get("session") == max(b.get("session", 0) for b in actors)]
    if out["executor"] == "local" or not latest:
        return out
    live = [a for a in latest if not a.get("died")] or latest  # an actor that died was replaced
    out["actors"] = len(live)
    threads = sorted({a["torch_threads"] for a in latest if a.get("torch_threads") is not None})
    if threads:
        out["torch_threads"] = threads[0] if len(threads) == 1 else threads
    gpus = sorted({str(a["gpu"]) for a in latest if a.get("gpu") and a.get("gpu") != "cpu"})
    if gpus:
        out["gpu"] = ", ".join(gpus)
    return out


def summarize(run_dir: str | Path) -> RunSummary:
    """The summary of a run directory, read from its store."""
    from t2ibench.reports import latency, serving
    from t2ibench.reports.tables import result_records
    from t2ibench.store import RunStore, call_records, current_suite

    with RunStore.open(run_dir) as store:
        suite = current_suite(store)
        results = result_records(store)
        calls = call_records(store)
        metric_rows = store.metrics()
        environment = run_environment(store.get_meta("environment", {}) or {}, store.get_meta("executor"),
                                      store.get_meta("actors"))
        knobs = {c["config_id"]: (c["model"], c["knobs"]) for c in store.configs()}
        served = serving.config_figures(store)
    configs = []
    for r in results:
        cid = r["config_id"]
        metrics = {
            m["metric"]: MetricSummary(_finite(m["value"]), _finite(m["lo"]), _finite(m["hi"]), m["n"],
                                       m["random_weights"], m["extra"].get("per_image", {}))
            for m in metric_rows if m["config_id"] == cid
        }
        model, config_knobs = knobs[cid]
        level = served.get(cid)
        figures = ("n_ok", *LATENCY_FIGURES, *MEMORY_FIGURES) + (tuple(serving.SERVING_COLUMNS) if level else ())
        configs.append(ConfigSummary(
            cid, r["config"], model, config_knobs, r["status"], {f: _finite(r[f]) for f in figures},
            level["latency_samples"] if level else latency.samples([c for c in calls if c["config_id"] == cid]),
            metrics, _serving_summary(level) if level else None,
        ))
    return RunSummary(str(run_dir), suite.get("name", "?"), dict(suite.get("gates") or {}), environment, configs)


def _serving_summary(level: dict) -> ServingSummary:
    return ServingSummary(_finite(level["offered_rate"]), float(level["duration_s"]), _finite(level["slo_ms"]),
                          len(level["requests"]), level["n_judged"], level["n_within"])


def to_json(summary: RunSummary) -> dict:
    data = asdict(summary)
    data.pop("source")
    return {"schema_version": RESULTS_SCHEMA_VERSION, "kind": RESULTS_KIND, **data}


def from_json(data: dict, source: str) -> RunSummary:
    if not isinstance(data, dict) or data.get("kind") != RESULTS_KIND:
        raise UserError(f"'{source}' is not a t2ibench results file (written by `t2ibench export`)")
    if data.get("schema_version") != RESULTS_SCHEMA_VERSION:
        raise UserError(f"'{source}' has results schema_version {data.get('schema_version')}; this t2ibench reads "
                        f"{RESULTS_SCHEMA_VERSION}; re-export it with `t2ibench export RUN_DIR -o FILE`")
    try:
        configs = [ConfigSummary(**{**c, "metrics": {k: MetricSummary(**m) for k, m in c["metrics"].items()},
                                    "serving": ServingSummary(**c["serving"]) if c.get("serving") else None})
                   for c in data["configs"]]
        return RunSummary(source, data["suite"], data["gates"], data["environment"], configs)
    except (KeyError, TypeError) as e:
        raise UserError(f"'{source}' is not a valid results file ({e})") from None


def load_summary(path: str | Path) -> RunSummary:
    """A run directory or an exported results file."""
    path = Path(path)
    if path.is_dir():
        return summarize(path)
    if not path.is_file():
        raise UserError(f"'{path}' does not exist (give a run directory or an exported results.json)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"'{path}' is not readable JSON ({e})") from None
    return from_json(data, str(path))


def write_summary(summary: RunSummary, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_json(summary), indent=1, allow_nan=False) + "\n")
    return out
