"""Load scenarios end to end: a suite with served configs runs on one machine with no setup (``endpoint: self``),
its served images equal the offline ones, every scheduled request is recorded, a level is atomic on resume, and
no server process outlives its run (Ctrl-C, or the driver killed). Real uvicorn servers on 127.0.0.1 only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import suite_dict

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")

import t2ibench  # noqa: E402
from t2ibench.store import RunStore  # noqa: E402
from t2ibench.suites import Suite  # noqa: E402

SERVED = {"kind": "concurrency", "concurrency": 2, "slo_ms": 60000, "warmup_requests": 1}


def served_suite(**over) -> dict:
    return suite_dict(**{"name": "served", "prompts": ["a red cube on a table", "a lighthouse at dusk"],
                         "seeds": [0, 1], "defaults": {"steps": 2, "width": 64, "height": 64, "guidance_scale": 5.0},
                         **over})


def server_processes(parent: int | None = None) -> list[int]:
    """Pids of live ``python -m t2ibench.serving`` processes (started for ``parent`` when given)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            continue
        if b"t2ibench.serving" not in cmd or state == "Z":
            continue
        started_by = cmd[cmd.index(b"--parent-pid") + 1] if b"--parent-pid" in cmd else None
        if parent is None or started_by == str(parent).encode():
            pids.append(int(entry.name))
    return pids


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def offline_and_served(tmp_path_factory):
    """One run: the offline config and the same config served at concurrency 2 (endpoint: self)."""
    out = tmp_path_factory.mktemp("served")
    offline = {"kind": "offline", "max_batch_size": 4, "max_wait_ms": 200}
    suite = served_suite(matrix={"scenario": ["single_stream", SERVED, offline, {**offline, "exact_batches": False}]})
    run = t2ibench.run(Suite.model_validate(suite), out=out, device="cpu", metrics=False)
    return out, run


def test_served_images_equal_offline(offline_and_served):
    out, run = offline_and_served
    cells = run.cells()
    assert set(cells["status"]) == {"ok"}
    by_config = {name: frame.sort_values(["prompt_id", "seed"]) for name, frame in cells.groupby("config")}
    offline = by_config["scenario=single_stream"]
    for name in ("scenario=concurrency concurrency=2 slo_ms=60000", "scenario=offline max_batch_size=4"):
        served = by_config[name]
        assert len(served) == len(offline) == 4
        for (_, a), (_, b) in zip(offline.iterrows(), served.iterrows()):
            assert (a["prompt_id"], a["seed"]) == (b["prompt_id"], b["seed"])
            assert (out / a["image_path"]).read_bytes() == (out / b["image_path"]).read_bytes(), name
    batched = by_config["scenario=offline max_batch_size=4 exact_batches=false"]  # batched kernels: a level or two
    for (_, a), (_, b) in zip(offline.iterrows(), batched.iterrows()):
        assert np.abs(pixels(out / a["image_path"]) - pixels(out / b["image_path"])).max() <= 2


def pixels(path: Path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_every_request_recorded(offline_and_served):
    out, run = offline_and_served
    with RunStore.open(out) as store:
        configs = {c["name"]: c["config_id"] for c in store.configs()}
        levels = store.levels()
        requests = store.requests()
    served_ids = {configs["scenario=concurrency concurrency=2 slo_ms=60000"],
                  configs["scenario=offline max_batch_size=4"],
                  configs["scenario=offline max_batch_size=4 exact_batches=false"]}
    assert {lv["config_id"] for lv in levels} == served_ids
    for level in levels:
        mine = [r for r in requests if r["config_id"] == level["config_id"]]
        assert len(mine) == level["n_scheduled"] == 4  # one per cell, warm-up excluded
        assert all(r["error_kind"] == "" and r["status"] == 200 for r in mine)
        for r in mine:  # latency runs from the scheduled send, and the server's split is inside it
            assert r["latency_ms"] == pytest.approx((r["done_s"] - r["scheduled_s"]) * 1000)
            assert r["sent_s"] >= r["scheduled_s"] - 1e-6
            assert r["queue_ms"] is not None and r["compute_ms"] is not None
            assert r["queue_ms"] + r["compute_ms"] <= r["latency_ms"] + 1.0
    def batches(name):
        return [r["batch"] for r in requests if r["config_id"] == configs[name]]

    assert max(batches("scenario=offline max_batch_size=4 exact_batches=false")) > 1  # all at once: batched
    assert set(batches("scenario=offline max_batch_size=4")) == {1}  # exact batches: one image per call
    assert not server_processes(os.getpid())  # the run stopped its servers


def test_results_rows_for_levels(offline_and_served):
    _, run = offline_and_served
    results = run.results().set_index("config")
    served = results.loc["scenario=concurrency concurrency=2 slo_ms=60000"]
    assert served["slo_attainment"] == 1.0 and served["error_rate"] == 0.0
    assert served["achieved_rate"] > 0 and served["latency_ms_p99"] >= served["latency_ms_p50"] > 0
    assert served["goodput"] == pytest.approx(served["achieved_rate"])  # every request within its SLO
    offline = results.loc["scenario=single_stream"]
    assert offline["slo_attainment"] != offline["slo_attainment"]  # NaN: not a load row


def test_resume_redoes_an_unfinished_level_whole(tmp_path):
    """A finished level stays; a level without its final row (the run was killed in it) is measured again."""
    suite = Suite.model_validate(served_suite(seeds=[0], matrix={"scenario": [SERVED]}))
    run = t2ibench.run(suite, out=tmp_path, device="cpu", metrics=False)
    with RunStore.open(tmp_path) as store:
        (level,) = store.levels()
        first = [r["sent_s"] for r in store.requests()]
    again = t2ibench.run(suite, out=tmp_path, device="cpu", metrics=False)  # complete: nothing is redone
    with RunStore.open(tmp_path) as store:
        assert store.levels() == [level] and [r["sent_s"] for r in store.requests()] == first
    with RunStore.open(tmp_path, write=True) as store:  # as if killed before the level was written
        store.clear_levels(level["config_id"])
    t2ibench.run(suite, out=tmp_path, device="cpu", metrics=False)
    with RunStore.open(tmp_path) as store:
        (redone,) = store.levels()
        assert redone["started_at"] > level["started_at"]
        assert len(store.requests()) == 2
    assert len(run.cells()) == len(again.cells()) == 2


def _driver(tmp_path: Path) -> subprocess.Popen:
    path = tmp_path / "suite.yaml"
    slow = {"kind": "server", "rate": 0.2, "requests": 50, "slo_ms": 60000, "warmup_requests": 0}
    path.write_text(yaml.safe_dump(served_suite(seeds=[0], matrix={"scenario": [slow]})))
    return subprocess.Popen([sys.executable, "-m", "t2ibench", "run", str(path), "--out", str(tmp_path / "run"),
                             "--device", "cpu", "--no-metrics"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_no_server_left_behind(tmp_path, how):
    driver = _driver(tmp_path)
    try:
        assert wait_until(lambda: server_processes(driver.pid), 120), "the driver never started its server"
        served = server_processes(driver.pid)
        time.sleep(1.0)
        if how == "ctrl-c":
            driver.send_signal(signal.SIGINT)
            driver.wait(120)
        else:
            driver.kill()
            driver.wait(10)
        assert wait_until(lambda: not set(served) & set(server_processes()),
                          60), f"server {served} outlived its driver ({how})"
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in server_processes(driver.pid):
            os.kill(pid, signal.SIGKILL)


def test_http_backend_against_t2ibench_serve_gives_the_local_images(tmp_path):
    """A single-stream ``backend: http`` config against ``t2ibench serve`` (of the same config) makes the images the
    local torch backend makes: one suite holds both (the include, and the defaults alone as ``default``)."""
    from t2ibench.harness.endpoint import SelfServer

    local = Suite.model_validate(served_suite())
    (config,) = local.configs()
    with SelfServer(config, device="cpu", timing=local.timing) as server:
        suite = Suite.model_validate(served_suite(include=[{"name": "remote", "backend": "http",
                                                            "endpoint": {"url": server.url}}]))
        run = t2ibench.run(suite, out=tmp_path, device="cpu", metrics=False)
    cells = run.cells()
    assert set(cells["status"]) == {"ok"} and len(cells) == 8
    mine = {name: frame.sort_values(["prompt_id", "seed"])["image_path"].tolist()
            for name, frame in cells.groupby("config")}
    for a, b in zip(mine["default"], mine["remote"]):
        assert (tmp_path / a).read_bytes() == (tmp_path / b).read_bytes()
    applied = run.results().set_index("config").loc["remote", "applied"]
    assert server.url.split("//")[1] in applied  # what the engine observed: the endpoint it called


def test_overload_of_a_real_server_is_accounted_and_survived():
    """Far above capacity: every scheduled request ends recorded, the 503s are counted as rejected, the server
    answers again afterwards and its memory stays bounded."""
    from t2ibench.harness.endpoint import SelfServer
    from t2ibench.harness.levels import plan_requests, serve_options
    from t2ibench.harness.loadgen import run_level
    from t2ibench.harness.plan import CellTask

    overload = {"kind": "server", "rate": 200, "requests": 300, "max_queue": 4, "warmup_requests": 0}
    suite = Suite.model_validate(served_suite(matrix={"scenario": [overload]}))
    (config,) = suite.configs()
    cells = tuple(CellTask(p, s) for p in suite.prompt_list() for s in suite.seed_list())

    def rss_mb(pid: int) -> float:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    with SelfServer(config, device="cpu", timing=suite.timing, serve_options=serve_options(config)) as server:
        planned, _ = plan_requests(config, cells)
        before = rss_mb(server.process.pid)
        result = run_level(server.url, planned, mode="open", timeout_s=60)
        after = rss_mb(server.process.pid)
        again = run_level(server.url, planned[:1], mode="open", timeout_s=60)
    kinds = [r.error_kind for r in result.records]
    assert [r.index for r in result.records] == list(range(300))  # every scheduled request, once
    assert set(kinds) <= {"", "rejected"} and kinds.count("rejected") > 200 and kinds.count("") >= 5
    assert all(r.status == 503 for r in result.records if r.error_kind == "rejected")
    assert again.records[0].error_kind == ""  # the server survived
    assert after - before < 150, (before, after)


def test_search_and_trace_against_an_endpoint(tmp_path):
    """``search`` bisects to the highest rate within the SLO (every probe recorded, one final); ``trace`` replays
    its lines at their times. Against a test server of known capacity (capacity 1 × 50 ms: 20 requests/s)."""
    from serving_apps import ImagesApp, Served

    trace = tmp_path / "requests.jsonl"
    trace.write_text("".join(f'{{"t": {0.1 * i:.1f}, "prompt": "a red cube on a table", "seed": {i}}}\n'
                             for i in range(6)) + '{"t": 0.7, "prompt": "not in the suite", "steps": 3}\n')
    app = ImagesApp(delay=0.05, capacity=1, queue=1000)
    with Served(app) as url:
        search = {"kind": "server", "requests": 40, "warmup_requests": 0,
                  "search": {"slo_ms": 400, "attainment": 0.9, "low": 8, "iterations": 2}}
        suite = served_suite(defaults={"steps": 2, "width": 64, "height": 64, "backend": "http",
                                       "endpoint": {"url": url}},
                             matrix={"scenario": [search, {"kind": "trace", "path": "requests.jsonl",
                                                           "time_scale": 0.5, "warmup_requests": 0}]})
        (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
        run = t2ibench.run(t2ibench.load_suite(tmp_path / "suite.yaml"), out=tmp_path / "run", device="cpu",
                           metrics=False)
    with RunStore.open(tmp_path / "run") as store:
        ids = {c["name"]: c["config_id"] for c in store.configs()}
        levels = store.levels()
        probes = [lv for lv in levels if lv["config_id"] == ids[next(n for n in ids if "search" in n)]]
        trace_requests = [r for r in store.requests() if r["config_id"] == ids["scenario=trace path=requests.jsonl"]]
    assert len(probes) >= 4 and sum(lv["final"] for lv in probes) == 1
    rates = [lv["offered_rate"] for lv in probes]
    assert rates[:2] == [8, 16]  # doubling from low until the SLO fails, then bisecting
    final = next(lv for lv in probes if lv["final"])
    assert 8 <= final["offered_rate"] <= 32 and final["n_scheduled"] == 40
    results = run.results().set_index("config")
    row = results.loc[next(n for n in results.index if "search" in n)]
    assert row["offered_rate"] == final["offered_rate"] and row["slo_attainment"] >= 0.9
    assert [round(r["scheduled_s"], 3) for r in trace_requests] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.35]
    assert [r["prompt_id"] for r in trace_requests][-1] == "trace-6"
    assert all(r["error_kind"] == "" for r in trace_requests)
