"""The Ray executor on a local Ray instance with 2 CPU actors (1 CPU each): the same cells and byte-identical
images as a local run, actors killed mid-run, a driver killed mid-run, and Ray missing.

CPU images are byte-identical for the same number of torch threads (float reductions depend on it), so the
local reference runs with one thread, as each actor does with ``cpus_per_actor=1``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

ray = pytest.importorskip("ray", reason="needs Ray: pip install 't2ibench[ray]'")

from t2ibench.cli import main  # noqa: E402
from t2ibench.harness import ray_executor  # noqa: E402
from t2ibench.harness.events import CellsDone, ConfigEnded, ConfigFacts  # noqa: E402
from t2ibench.harness.plan import CellTask, ConfigTask, GroupTask, RunPlan  # noqa: E402
from t2ibench.orchestration import execute  # noqa: E402
from t2ibench.store import RunStore  # noqa: E402
from t2ibench.suites import Config, Timing, load_suite  # noqa: E402

# three load groups (tiny-sd fp32, tiny-sd bf16, tiny-sdxl), four configs × 3 prompts × 2 seeds
SUITE = {
    "name": "ray", "model": "random:tiny-sd", "prompts": ["a red cube on a table", "a lighthouse at dusk", "a cat"],
    "seeds": [0, 1], "defaults": {"steps": 2, "width": 32, "height": 32},
    "matrix": {"precision": ["fp32", "bf16"]}, "include": [{"name": "fewer-steps", "steps": 1},
                                                         {"name": "xl", "model": "random:tiny-sdxl"}],
    "timing": {"warmup": 0, "repeats": 1},
}
TOTAL = 4 * 3 * 2
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """A small local Ray instance shared by the in-process tests (the executor joins it and leaves it up)."""
    path = os.pathsep.join(p for p in sys.path if p)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "ray.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def local(suite_path, tmp_path_factory) -> Path:
    """The reference: the local executor, with one torch thread like each actor."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return execute(load_suite(suite_path), out=tmp_path_factory.mktemp("local") / "run", device="cpu",
                       metrics=False).run_dir
    finally:
        torch.set_num_threads(threads)


def _cells(run_dir: Path) -> dict[tuple, str]:
    with RunStore.open(run_dir) as store:
        cells = store.cells()
    keys = [(c["config_id"], c["prompt_id"], c["seed"]) for c in cells]
    assert len(keys) == len(set(keys))
    return {k: c["status"] for k, c in zip(keys, cells)}


def _pngs(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in (run_dir / "images").rglob("*.png")}


def _assert_same_as_local(run_dir: Path, local: Path) -> None:
    cells = _cells(run_dir)
    assert cells == _cells(local) and len(cells) == TOTAL and set(cells.values()) == {"ok"}
    assert _pngs(run_dir) == _pngs(local)
    with RunStore.open(run_dir) as store:  # one call per cell (batch size 1): none was recorded twice
        calls = store.calls()
        assert len(calls) == TOTAL and {(c["config_id"], c["call_index"]) for c in calls} == \
            {(c["config_id"], c["call_index"]) for c in store.cells()}
    assert not list(run_dir.rglob("*.tmp"))


def test_ray_run_gives_the_cells_and_images_of_a_local_run(cluster, suite_path, local, tmp_path):
    run = execute(load_suite(suite_path), out=tmp_path / "run", device="cpu", executor="ray", metrics=False)
    _assert_same_as_local(run.run_dir, local)
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["executor"]["name"] == "ray"
    actors = manifest["actors"]
    assert len(actors) == 2 and sum(a["cells"] for a in actors) == sum(a["images"] for a in actors) == TOTAL
    assert all(a["gpu"] == "cpu" and a["hostname"] and a["node_ip"] and a["torch_threads"] == 1 and a["config_ids"]
               for a in actors)
    ran = [set(a["config_ids"]) for a in actors]
    assert not ran[0] & ran[1]  # each config ran on one actor: the groups were not split


def test_actors_killed_mid_run_are_replaced_and_no_cell_is_lost_or_doubled(cluster, suite_path, local, tmp_path,
                                                                          monkeypatch):
    """One actor is killed after the first result batch, another one after the fourth (or the first batch after
    it with an actor at work); each time its unfinished cells run on another actor (a replacement starts), and
    the driver records each cell once."""
    killed = []

    def kill(batch: int, working: list) -> None:
        if working and (batch == 1 or (batch >= 4 and len(killed) == 1)):
            killed.append(working[0])
            ray.kill(working[0])

    monkeypatch.setattr(ray_executor, "AFTER_BATCH", kill)
    run = execute(load_suite(suite_path), out=tmp_path / "run", device="cpu", executor="ray", metrics=False)
    assert len(killed) == 2
    _assert_same_as_local(run.run_dir, local)
    actors = json.loads((run.run_dir / "manifest.json").read_text())["actors"]
    assert len([a for a in actors if a.get("died")]) == 2 and len(actors) >= 3  # replaced when work was left
    assert sum(a["images"] for a in actors) == TOTAL


def _tasks(n_configs: int, n_cells: int, batch_size: int = 1) -> GroupTask:
    suite = {**SUITE, "prompts": [f"p{i}" for i in range(n_cells)], "seeds": [0], "matrix": {},
             "include": [{"name": f"c{i}", "steps": i + 1, "batch_size": batch_size} for i in range(n_configs)]}
    path = Path(tempfile.mkdtemp()) / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    loaded = load_suite(path)
    configs = [c for c in loaded.configs() if c.name.startswith("c")]  # the included ones
    cells = tuple(CellTask(p, 0) for p in loaded.prompt_list())
    return GroupTask(("m",), tuple(ConfigTask(c, cells) for c in configs))


def test_groups_are_split_by_configs_then_by_batch_aligned_cells():
    three = _tasks(3, 6)
    assert [len(s.configs) for s in ray_executor.split_groups((three,), 2)] == [2, 1]  # by configs
    assert ray_executor.split_groups((three,), 1) == [three]
    one = _tasks(1, 20, batch_size=4)  # 5 batches: halves of 2 and 3 batches
    assert sorted(len(s.configs[0].cells) for s in ray_executor.split_groups((one,), 2)) == [8, 12]
    small = _tasks(1, 10)  # halves under MIN_SPLIT_CELLS: not split
    assert ray_executor.split_groups((small,), 2) == [small]


class _Sink:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        return lambda *args: self.events.append((name, *args))


def _shipped(sink_method: str, *args) -> tuple:
    """What an actor's queue sink puts on its queue for that call (pickled by Ray on the way)."""
    import pickle
    import queue

    events: queue.Queue = queue.Queue()
    getattr(ray_executor._QueueSink(events, encode_inline=True), sink_method)(*args)
    return pickle.loads(pickle.dumps(events.get_nowait()))


def test_a_split_config_starts_once_gets_distinct_call_indices_and_ends_once_with_its_worst_status():
    group = _tasks(1, 16)
    halves = ray_executor.split_groups((group,), 2)
    plan = RunPlan(groups=(group,), timing=Timing(), devices=("cpu",))
    sink = _Sink()
    replay = ray_executor._Replay(sink, plan)
    a, b = (replay.open(h) for h in halves)
    config = group.configs[0].config
    for shard in (a, b):
        replay.apply(shard, *_shipped("config_started", config, 8))
        for i, cell in enumerate(shard.group.configs[0].cells[:4]):
            replay.apply(shard, *_shipped("cells_done", CellsDone(config, (cell,), None, "boom", (None, 1.0), i)))
    replay.apply(a, *_shipped("config_ended", ConfigEnded(config, "done", "", (), ConfigFacts(load_ms=5.0,
                                                                                              recompiles=1))))
    rest = b.group.configs[0].cells[4:]
    replay.apply(b, *_shipped("config_ended", ConfigEnded(config, "skipped", "too many failures", rest,
                                                          ConfigFacts(load_ms=7.0, warmup_ms=2.0, recompiles=2))))
    assert [e[0] for e in sink.events].count("config_started") == 1 and sink.events[0][2] == 16
    done = [e[1] for e in sink.events if e[0] == "cells_done"]
    assert all(isinstance(e, CellsDone) and e.error == "boom" for e in done)
    assert sorted(e.call_index for e in done) == [0, 1, 2, 3, 8, 9, 10, 11]  # each shard has its own block
    ends = [e[1] for e in sink.events if e[0] == "config_ended"]
    assert len(ends) == 1 and (ends[0].status, ends[0].reason, ends[0].cells) == ("skipped", "too many failures", rest)
    # the first shard's facts stand, the second fills their gaps, recompiles add up
    assert ends[0].facts == ConfigFacts(load_ms=5.0, warmup_ms=2.0, recompiles=3)
    # a shard lost with cells left: only the cells the driver did not receive run again
    c = replay.open(halves[0])
    replay.apply(c, *_shipped("cells_done", CellsDone(config, (halves[0].configs[0].cells[0],), None, "x",
                                                      (None, 1.0), 0)))
    assert c.remainder().configs[0].cells == halves[0].configs[0].cells[1:]


def test_a_load_config_is_never_split_and_its_levels_reach_the_sink_with_pngs():
    import numpy as np

    from t2ibench.harness.events import LevelDone, ServedCell
    from t2ibench.store import LevelRow, RequestRow, encode_png

    group = _tasks(1, 16)
    task = group.configs[0]
    knobs = task.config.knobs.replace(scenario={"kind": "server", "rate": 1.0})
    load_config = Config(name="load", model=task.config.model, knobs=knobs)
    load = GroupTask(("m",), (ConfigTask(load_config, task.cells),))
    assert len(ray_executor.split_groups((group,), 2)) == 2 and ray_executor.split_groups((load,), 2) == [load]
    config = load.configs[0].config
    sink = _Sink()
    replay = ray_executor._Replay(sink, RunPlan(groups=(load,), timing=Timing(), devices=("cpu",)))
    shard = replay.open(load)
    pixels = np.full((8, 8, 3), 9, np.uint8)
    cell = load.configs[0].cells[0]
    event = LevelDone(config, LevelRow(config.config_id, 0, "server", 1.0, 2.0, 1, offered_rate=1.0),
                      (RequestRow(config.config_id, 0, 0, 0.0, 0.5, 500.0),), (ServedCell(cell, 0, "ok", "", pixels),))
    replay.apply(shard, *_shipped("level_done", event))
    ((kind, got),) = sink.events
    assert kind == "level_done" and got.served[0].pixels == encode_png(pixels)  # PNG bytes, made on the actor
    assert got.level == event.level and got.requests == event.requests
    assert shard.remainder().configs[0].cells == load.configs[0].cells[1:]  # the served cell was received


def test_a_gpu_actor_encodes_pngs_beside_its_calls_and_sends_no_padding():
    import numpy as np

    from t2ibench.backends.engine import CallOutcome, ImageOutcome
    from t2ibench.backends.timing import CallTiming
    from t2ibench.store import encode_png

    runner = ray_executor.ShardRunner("cuda", Timing(), False, 1, {})  # nothing runs: no GPU needed
    sink = ray_executor._QueueSink(runner.events, encode_inline=False)
    pixels = np.full((8, 8, 3), 7, np.uint8)
    padded = CallOutcome([ImageOutcome("ok", pixels)] * 2, CallTiming(1.0, 0.2, 0.6, 0.2, [0.6]))
    sink.cells_done(CellsDone("config", ("one cell",), padded, "", (None, 1.0), 0, (1.0,)))
    assert runner.events.queue[0][1][0].outcome.images[0].pixels is pixels  # not encoded in the worker's thread
    ((kind, (event,)),) = runner.next_events()
    assert kind == "cells_done" and [i.pixels for i in event.outcome.images] == [encode_png(pixels)]


def _ok_cells(run_dir: Path) -> int:
    try:
        with sqlite3.connect(run_dir / "run.sqlite", timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM cells WHERE status='ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_killed_driver_resumes_with_the_same_command(cluster, suite_path, local, tmp_path, capsys):
    """SIGKILL the driver once some cells are saved: its local Ray instance dies with it, and the same command
    finishes the run."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "t2ibench", "run", str(suite_path), "--out", str(out), "--device", "cpu",
               "--no-metrics", "--executor", "ray", "--executor-opt", "max_actors=1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while _ok_cells(out) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    instance = [p for p in psutil.Process(proc.pid).children(recursive=True)
                if p.name() in ("raylet", "gcs_server")]
    assert len(instance) == 2  # the driver's own local instance
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not psutil.wait_procs(instance, timeout=30)[1]  # it died with the driver
    saved = _ok_cells(out)
    assert 2 <= saved < TOTAL
    with RunStore.open(out) as store:
        kept = {(c["config_id"], c["prompt_id"], c["seed"]): c["created_at"] for c in store.cells()}

    assert main(command[3:]) == 0  # the same command (here it joins the tests' Ray instance)
    out_err = capsys.readouterr()
    assert f"{saved} already done" in out_err.err
    assert "images" in out_err.out and "actor 0 on" in out_err.out  # images per actor
    _assert_same_as_local(out, local)
    with RunStore.open(out) as store:  # the cells saved before the kill were not redone
        now = {(c["config_id"], c["prompt_id"], c["seed"]): c["created_at"] for c in store.cells()}
    assert {k: now[k] for k in kept} == kept
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    # the killed session recorded no actors; the resumed one ran exactly the rest
    assert [a["session"] for a in manifest["actors"]] == [1] and manifest["actors"][0]["images"] == TOTAL - saved


def test_without_ray_the_user_gets_one_line_naming_the_extra(suite_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    assert main(["run", str(suite_path), "--out", str(tmp_path / "run"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["t2ibench: error: executor 'ray' needs Ray: pip install 't2ibench[ray]'"]
    assert not (tmp_path / "run").exists()


def test_shared_gpus_are_flagged_in_the_report():
    from t2ibench.reports.html import render_html
    from t2ibench.reports.recommend import Recommendation

    kwargs = dict(suite={"name": "s"}, rows=[], cells=[], metrics=[], plots=[], environment={},
                  random_metrics=[], recommendation=Recommendation(None, None, "none"))
    assert 'id="shared-gpus"' in render_html(**kwargs, shared_gpus=True)
    assert 'id="shared-gpus"' not in render_html(**kwargs)
