"""The recorder fed typed events by hand: a load level's requests, its served cells each with its own call (its
latency is its request's), the image before its row, and cells.csv with the columns an offline run writes."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2ibench.backends.engine import CallOutcome, ImageOutcome
from t2ibench.backends.timing import CallTiming
from t2ibench.harness.events import CellsDone, ConfigEnded, ConfigFacts, LevelDone, ServedCell
from t2ibench.harness.plan import CellTask
from t2ibench.harness.recorder import StoreRecorder
from t2ibench.store import LevelRow, RequestRow, RunStore
from t2ibench.suites import Config
from t2ibench.suites.knobs import Knobs
from t2ibench.suites.prompts import Prompt

FIXTURE_CELLS_CSV = Path(__file__).parent / "fixtures" / "store_v1" / "cells.csv"  # written by t2ibench 0.1

OFFLINE = Config(name="offline", model="random:tiny-sd", knobs=Knobs(steps=2, batch_size=2))
LOAD = Config(name="served", model="random:tiny-sd", knobs=Knobs(steps=2, scenario={"kind": "server", "rate": 2.0}))
CELLS = tuple(CellTask(Prompt(prompt_id=f"p{i}", text=f"prompt {i}"), 0) for i in range(3))


def _pixels(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def _requests(level: int, latencies: list[float]) -> tuple[RequestRow, ...]:
    out = []
    for i, ms in enumerate(latencies):
        timeout = i == 2
        out.append(RequestRow(LOAD.config_id, level, i, scheduled_s=0.5 * i, done_s=0.5 * i + ms / 1000,
                              latency_ms=ms, prompt_id=CELLS[i].prompt.prompt_id, seed=0, sent_s=0.5 * i,
                              first_byte_s=None if timeout else 0.5 * i + ms / 2000, status=None if timeout else 200,
                              error_kind="timeout" if timeout else "", error="no answer in 0.6 s" if timeout else "",
                              bytes=None if timeout else 123, queue_ms=None if timeout else 1.0,
                              compute_ms=None if timeout else ms - 1.0, batch=None if timeout else 1, slo_ms=500.0,
                              capped=i == 1))
    return tuple(out)


def _final_level(latencies: list[float], values: tuple[int, int]) -> LevelDone:
    level = LevelRow(LOAD.config_id, 1, "server", started_at=1000.0, duration_s=2.0, n_scheduled=3, offered_rate=2.0,
                     capped=1)
    served = (ServedCell(CELLS[0], 0, "ok", "", _pixels(values[0])),
              ServedCell(CELLS[1], 1, "ok", "", _pixels(values[1])),
              ServedCell(CELLS[2], 2, "failed", "timeout: no answer in 0.6 s", None))
    return LevelDone(LOAD, level, _requests(1, latencies), served)


def _record_session(store: RunStore, background: bool, latencies: list[float], values: tuple[int, int]) -> None:
    recorder = StoreRecorder(store, background=background)
    try:
        recorder.config_started(LOAD, len(CELLS))
        probe = LevelRow(LOAD.config_id, 0, "server", started_at=990.0, duration_s=1.0, n_scheduled=2,
                         offered_rate=8.0, final=False, note="probe")
        recorder.level_done(LevelDone(LOAD, probe, _requests(0, [900.0, 950.0])))  # a search's probe: no cells
        recorder.level_done(_final_level(latencies, values))
        recorder.config_ended(ConfigEnded(LOAD, "done", facts=ConfigFacts(load_ms=12.0)))
    finally:
        recorder.close()


@pytest.mark.parametrize("background", [False, True], ids=["inline", "writer-thread"])
def test_a_level_done_records_its_requests_and_served_cells_pointing_to_their_calls(tmp_path, background):
    run = tmp_path / "run"
    with RunStore.open(run, write=True) as store:
        store.add_config(0, OFFLINE)
        store.add_config(1, LOAD)
        recorder = StoreRecorder(store, background=background)
        recorder.config_started(OFFLINE, 2)
        outcome = CallOutcome([ImageOutcome("ok", _pixels(1)), ImageOutcome("ok", _pixels(2))],
                              CallTiming(30.0, 5.0, 20.0, 5.0, [10.0, 10.0]))
        recorder.cells_done(CellsDone(OFFLINE, CELLS[:2], outcome, "", (None, 700.0), 0, (31.0, 30.0, 29.0)))
        recorder.config_ended(ConfigEnded(OFFLINE, "skipped", "cut short", CELLS[2:], ConfigFacts(recompiles=2)))
        recorder.close()
        _record_session(store, background, [120.0, 340.0, 600.0], (7, 9))

        levels = store.levels()
        assert [(lv["config_id"], lv["level"], lv["final"]) for lv in levels] == [
            (LOAD.config_id, 0, False), (LOAD.config_id, 1, True)]
        requests = store.requests(LOAD.config_id)
        expected = _requests(0, [900.0, 950.0]) + _requests(1, [120.0, 340.0, 600.0])
        assert requests == [r.__dict__ for r in expected]

        calls = [c for c in store.calls() if c["config_id"] == LOAD.config_id]
        assert [(c["call_index"], c["status"], c["batch_size"], c["n_images"]) for c in calls] == [
            (0, "ok", 1, 1), (1, "ok", 1, 1), (2, "failed", 1, 1)]
        assert [(c["latency_ms"], c["samples"]) for c in calls] == [(120.0, [120.0]), (340.0, [340.0]),
                                                                   (600.0, [600.0])]
        assert all(c["encode_ms"] is None and c["step_ms"] == [] and c["peak_rss_mb"] is None for c in calls)
        assert calls[2]["error"] == "timeout: no answer in 0.6 s"

        cells = {(c["config_id"], c["prompt_id"]): c for c in store.cells()}
        latency = {r.prompt_id: r.latency_ms for r in expected if r.level == 1}
        for i, value in ((0, 7), (1, 9)):
            cell = cells[LOAD.config_id, f"p{i}"]
            assert cell["status"] == "ok" and cell["call_index"] == i
            assert cell["latency_ms"] == latency[f"p{i}"] and cell["latency_samples"] == [latency[f"p{i}"]]
            assert cell["batch_size"] == 1 and cell["recompiles"] == 0
            data = (run / cell["image_path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == cell["image_sha256"]
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), _pixels(value))
        failed = cells[LOAD.config_id, "p2"]
        assert (failed["status"], failed["image_path"], failed["latency_ms"]) == ("failed", None, 600.0)
        assert store.done_cells(LOAD.config_id) == {("p0", 0), ("p1", 0)}
        # the offline config's cells still read their call's figures; its skipped cell has none
        ok = cells[OFFLINE.config_id, "p0"]
        assert (ok["latency_ms"], ok["latency_samples"], ok["step_ms"], ok["peak_rss_mb"], ok["batch_size"]) == (
            30.0, [31.0, 30.0, 29.0], [10.0, 10.0], 700.0, 2)
        skipped = cells[OFFLINE.config_id, "p2"]
        assert (skipped["status"], skipped["error"], skipped["latency_ms"], skipped["call_index"],
                skipped["latency_samples"], skipped["batch_size"]) == ("skipped", "cut short", None, None, [], 2)
        configs = {c["config_id"]: c for c in store.configs()}
        assert (configs[OFFLINE.config_id]["status"], configs[OFFLINE.config_id]["recompiles"]) == ("skipped", 2)
        assert (configs[LOAD.config_id]["status"], configs[LOAD.config_id]["load_ms"]) == ("done", 12.0)

        from t2ibench.reports import write_reports

        write_reports(store, ("csv",))
    with open(run / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    with open(FIXTURE_CELLS_CSV) as f:
        old_header = next(csv.reader(f))
    assert list(rows[0]) == old_header + ["upscale_ms"]  # the columns 0.1 wrote, and one added since
    served = {r["prompt_id"]: r for r in rows if r["config_id"] == LOAD.config_id}
    assert [float(served[f"p{i}"]["latency_ms"]) for i in range(3)] == [120.0, 340.0, 600.0]
    assert served["p0"]["encode_ms"] == "" and served["p0"]["step_ms"] == "[]"


def test_a_level_rerun_by_a_later_session_replaces_it_with_calls_of_its_own(tmp_path):
    """A killed run reruns its unfinished level whole: the new try's requests replace the old ones, and its calls
    get indices past every call already stored, so no earlier call is overwritten."""
    run = tmp_path / "run"
    with RunStore.open(run, write=True) as store:
        store.add_config(0, LOAD)
        _record_session(store, False, [120.0, 340.0, 600.0], (7, 9))
    with RunStore.open(run, write=True) as store:
        _record_session(store, True, [150.0, 200.0, 610.0], (3, 4))
        calls = [c for c in store.calls() if c["config_id"] == LOAD.config_id]
        assert [(c["call_index"], c["latency_ms"]) for c in calls] == [
            (0, 120.0), (1, 340.0), (2, 600.0), (3, 150.0), (4, 200.0), (5, 610.0)]
        assert [r["latency_ms"] for r in store.requests(LOAD.config_id) if r["level"] == 1] == [150.0, 200.0, 610.0]
        cells = sorted(store.cells(), key=lambda c: c["prompt_id"])
        assert [(c["call_index"], c["latency_ms"]) for c in cells] == [(3, 150.0), (4, 200.0), (5, 610.0)]
        image = np.asarray(Image.open(run / cells[0]["image_path"]))
        assert np.array_equal(image, _pixels(3))
