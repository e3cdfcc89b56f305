"""Everything a report shows, read once from the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from t2ibench.store import RunStore
from t2ibench.reports.recommend import Recommendation, recommend
from t2ibench.reports.tables import metric_names, result_records
from t2ibench.store import cell_records, current_suite


@dataclass(frozen=True)
class ReportContext:
    suite: dict
    rows: list[dict]
    cells: list[dict]
    metrics: list[str]
    random_metrics: list[str]
    objectives: dict[str, str]
    constraints: dict[str, dict]
    recommendation: Recommendation
    environment: dict
    executor: dict  # the executor and its options (``share_gpus`` for a Ray run)
    profiles: dict[str, list[dict]] = field(default_factory=dict)  # config_id → its profiled top operators


def build_context(store: RunStore, objectives: dict[str, str] | None = None) -> ReportContext:
    suite = current_suite(store)
    objectives = objectives if objectives is not None else (suite.get("objectives") or {})
    rows = result_records(store, objectives)
    constraints = suite.get("constraints") or {}
    return ReportContext(
        suite=suite, rows=rows, cells=cell_records(store), metrics=metric_names(rows),
        random_metrics=sorted({m for r in rows for m in r["random_weights"].split(",") if m}),
        objectives=objectives, constraints=constraints,
        recommendation=recommend(rows, objectives, constraints, [not r["pareto_note"] for r in rows]),
        environment=store.get_meta("environment", {}) or {},
        executor=store.get_meta("executor", {}) or {},
        profiles={cid: ops for cid, ops in store.profile_ops().items() if cid in {r["config_id"] for r in rows}},
    )


def recommendation_of(store: RunStore, objectives: dict[str, str] | None = None) -> Recommendation:
    """The run's recommendation, as its reports show it (without reading the cells)."""
    suite = current_suite(store)
    objectives = objectives if objectives is not None else (suite.get("objectives") or {})
    rows = result_records(store, objectives)
    return recommend(rows, objectives, suite.get("constraints") or {}, [not r["pareto_note"] for r in rows])
