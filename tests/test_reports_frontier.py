"""The frontier flags of result rows read from a hand-built store: which configs may be on it."""

from __future__ import annotations

import pytest

from t2ibench.store import CallRow, CellRow, RunStore
from t2ibench.metrics.evaluate import MetricResult
from t2ibench.reports.recommend import recommend
from t2ibench.reports.tables import result_records
from t2ibench.suites.knobs import Knobs
from t2ibench.suites.schema import Config

# name → (steps, latency ms, fid, clip_score, is_reference). The reference is fastest and has FID 0
# (measured against itself), so it dominates every other config on {latency, fid} unless excluded.
CONFIGS = {
    "fast": (2, 100.0, 9.0, 30.0, False),
    "mid": (3, 200.0, 5.0, 31.0, False),
    "slow": (4, 300.0, 6.0, 29.0, False),  # dominated by mid on latency and fid
    "reference": (8, 50.0, 0.0, 35.0, True),
}


@pytest.fixture
def store(tmp_path):
    with RunStore.open(tmp_path / "run", write=True) as s:
        ids = {}
        for pos, (name, (steps, latency, fid, clip, is_ref)) in enumerate(CONFIGS.items()):
            cfg = Config(name=name, model="random:tiny-sd", knobs=Knobs(steps=steps), is_reference=is_ref)
            ids[name] = cfg.config_id
            s.add_config(pos, cfg)
            s.update_config(cfg.config_id, status="done")
            for seed in (0, 1):
                s.put_cells([CellRow(cfg.config_id, "p0", seed, "a prompt", None, "ok", call_index=seed,
                                     image_path=f"images/{cfg.config_id}/p0-{seed}.png")],
                            CallRow(cfg.config_id, seed, "ok", 1, 1, samples=[latency], latency_ms=latency,
                                    encode_ms=1.0, denoise_ms=latency - 2, decode_ms=1.0, step_ms=[1.0]))
            s.put_metrics([MetricResult(cfg.config_id, "fid", fid, None, None, False, 2),
                           MetricResult(cfg.config_id, "clip_score", clip, None, None, False, 2)])
        s.set_meta("suite", {"name": "t", "configs": [{"config_id": i} for i in ids.values()]})
        yield s


def _flags(rows):
    return {r["config"]: (r["pareto"], r["pareto_note"]) for r in rows}


def test_reference_is_off_the_frontier_when_an_objective_is_measured_against_it(store):
    objectives = {"latency_ms_p50": "min", "fid": "min"}
    rows = result_records(store, objectives)
    flags = _flags(rows)
    assert flags["reference"] == (False, "excluded: reference (fid measured against it)")
    # the frontier of the other three, computed without the reference: fast (quickest) and mid (best FID)
    assert {n: on for n, (on, _) in flags.items() if n != "reference"} == {"fast": True, "mid": True, "slow": False}
    rec = recommend(rows, objectives, {}, [not r["pareto_note"] for r in rows])
    assert rec.config == "fast"  # lowest latency among the eligible; the faster reference is ruled out


def test_reference_competes_when_no_objective_is_measured_against_it(store):
    rows = result_records(store, {"latency_ms_p50": "min", "clip_score": "max"})
    flags = _flags(rows)
    assert flags["reference"] == (True, "")
    assert not any(on for n, (on, _) in flags.items() if n != "reference")  # it dominates all of them
