"""The Ray executor: a plan's load groups run on Ray actors, one per GPU (or per ``cpus_per_actor`` CPUs).

Each actor runs the same :class:`Worker` as a local run, on its own device, so its calls are timed the
same way. Its results come back as events, images as PNG bytes made on the actor; the driver replays
them into its sink (the :class:`StoreRecorder`), so the driver alone writes the store.

- Scheduling: one shard per load group, so an actor loads each model once. With fewer groups than
  actors, the largest shard is halved (its configs, else a config's cells) until every actor has one.
- Backpressure: an actor buffers at most ``BUFFER_EVENTS`` results (its worker waits while the buffer
  is full) and the driver pulls one batch per actor at a time, so memory does not grow with the sweep.
- Faults: when an actor dies, the cells of its shard that the driver has not received run again on
  another actor (a replacement is started); after ``MAX_ATTEMPTS`` deaths they are recorded as failed.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from t2ibench.backends import BACKENDS, BackendSpec
from t2ibench.backends.engine import ImageOutcome
from t2ibench.base import plural
from t2ibench.errors import UserError
from t2ibench.executors import RayOptions
from t2ibench.harness.events import CellsDone, ConfigEnded, ConfigFacts, LevelDone
from t2ibench.harness.interrupt import StopRequested, check_stop, request_stop
from t2ibench.harness.plan import ConfigTask, GroupTask, RunPlan
from t2ibench.harness.worker import ResultSink, Worker, batches
from t2ibench.store import encode_png
from t2ibench.suites import Config, Timing
from t2ibench.suites.scenario import is_load

BUFFER_EVENTS = 16  # per actor: results waiting for the driver; its worker pauses while the buffer is full
MAX_ATTEMPTS = 3  # deaths of a shard's actor after which its remaining cells are recorded as failed
MIN_SPLIT_CELLS = 8  # a config's cells are split across actors only into shards at least this large
POLL_S = 0.5  # how often the driver checks for Ctrl-C while it waits for results
# Test hook: called on the driver after each result batch with (batches so far, the handles of the actors
# running a shard); the tests kill actors from it.
AFTER_BATCH: Callable[[int, list], None] | None = None

_END = "end"


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("executor 'ray' needs Ray: pip install 't2ibench[ray]'") from None
    return ray


# --- on the actor ---------------------------------------------------------------------------------

def _png(pixels):
    return encode_png(pixels) if pixels is not None and not isinstance(pixels, bytes) else pixels


def _encoded(item: tuple) -> tuple:
    """The queued item (method name, arguments) with its images as PNG bytes (the bytes a local run writes)."""
    kind, args = item
    if kind == "cells_done" and args[0].outcome is not None:
        event: CellsDone = args[0]
        images = [ImageOutcome(i.status, _png(i.pixels), i.error) for i in event.outcome.images]
        return kind, (replace(event, outcome=replace(event.outcome, images=images)),)
    if kind == "level_done" and args[0].served:
        level: LevelDone = args[0]
        return kind, (replace(level, served=tuple(replace(s, pixels=_png(s.pixels)) for s in level.served)),)
    return item


class _QueueSink:
    """The actor's :class:`ResultSink`: each result becomes an item (method name, arguments) in a bounded queue;
    the typed events (:mod:`t2ibench.harness.events`) travel as they are.

    As the local recorder writes, a CPU actor encodes PNGs between its calls (the calls use every CPU it
    has); a GPU actor leaves them to :meth:`ShardRunner.next_events`, which overlaps the next call.
    """

    def __init__(self, events: queue.Queue, encode_inline: bool):
        self.events = events
        self.encode_inline = encode_inline

    def config_started(self, config: Config, n_cells: int) -> None:
        self.events.put(("config_started", (config, n_cells)))

    def config_ended(self, event: ConfigEnded) -> None:
        self.events.put(("config_ended", (event,)))

    def cells_done(self, event: CellsDone) -> None:
        if event.outcome is not None:  # the padding of a last partial batch is not sent
            event = replace(event, outcome=replace(event.outcome, images=event.outcome.images[:len(event.cells)]))
        item = ("cells_done", (event,))
        self.events.put(_encoded(item) if self.encode_inline else item)

    def level_done(self, event: LevelDone) -> None:
        item = ("level_done", (event,))
        self.events.put(_encoded(item) if self.encode_inline else item)

    def config_profiled(self, config, trace, ops) -> None:
        self.events.put(("config_profiled", (config, trace, ops)))

    def group_ended(self, report) -> None:
        self.events.put(("group_ended", (report,)))


class ShardRunner:
    """A Ray actor: runs shards with a :class:`Worker` in a thread and hands their events to the driver."""

    def __init__(self, device: str, timing: Timing, trust_remote_code: bool, cpus: int,
                 backends: dict[str, BackendSpec]):
        for name, spec in backends.items():  # backends registered at run time on the driver (plugins, tests)
            if name not in BACKENDS:
                BACKENDS.add(name, spec)
        if device == "cpu":
            import torch

            torch.set_num_threads(cpus)  # the CPUs Ray reserved for this actor, and no more
        self.worker = Worker(device, timing, trust_remote_code=trust_remote_code)
        self.events: queue.Queue = queue.Queue(maxsize=BUFFER_EVENTS)

    def describe(self) -> dict:
        import ray
        import torch

        context = ray.get_runtime_context()
        cuda = self.worker.device.startswith("cuda")
        return {"node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(), "pid": os.getpid(),
                "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
                "gpu_ids": [str(i) for i in context.get_accelerator_ids().get("GPU", [])],
                "torch_threads": torch.get_num_threads()}

    def start(self, group: GroupTask) -> None:
        threading.Thread(target=self._run, args=(group,), name="t2ibench-shard", daemon=True).start()

    def _run(self, group: GroupTask) -> None:
        try:
            self.worker.run_group(group, _QueueSink(self.events, encode_inline=self.worker.device == "cpu"))
        except StopRequested:
            pass
        except UserError as e:  # a model that cannot be found: the driver reports it with the others
            self.events.put(("user_error", (e.problems,)))
        except BaseException:
            self.events.put(("crash", (traceback.format_exc(),)))
        self.events.put((_END, ()))

    def next_events(self) -> list[tuple]:
        """The events ready now (waiting for a first one); a shard's last batch ends with its end event."""
        out = [self.events.get()]
        while out[-1][0] != _END and len(out) < BUFFER_EVENTS:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                break
        return [_encoded(e) for e in out]

    def stop(self) -> None:
        """Stop after the current call, as a first Ctrl-C does in a local run."""
        request_stop()


# --- on the driver --------------------------------------------------------------------------------

def split_groups(groups: tuple[GroupTask, ...], n: int) -> list[GroupTask]:
    """The shards for ``n`` actors, largest first: one per group, and while there are fewer than ``n``,
    the largest splittable shard is halved."""
    shards = sorted(groups, key=lambda s: s.n_cells, reverse=True)
    while len(shards) < n:
        for i, shard in enumerate(shards):
            halves = _halve(shard)
            if halves:
                shards[i:i + 1] = halves
                break
        else:
            break
        shards.sort(key=lambda s: s.n_cells, reverse=True)
    return shards


def _halve(shard: GroupTask) -> list[GroupTask] | None:
    """Two shards of about half the cells: split between configs, or else a config's cells at a batch
    boundary (so each call holds the same cells as in a local run), each half at least MIN_SPLIT_CELLS; a
    load-scenario config's cells are never split."""
    key, configs = shard.load_key, shard.configs
    if len(configs) > 1:
        done = 0
        for k, task in enumerate(configs[:-1]):
            done += len(task.cells)
            if 2 * done >= shard.n_cells:
                break
        return [GroupTask(key, configs[:k + 1]), GroupTask(key, configs[k + 1:])]
    task = configs[0]
    if is_load(task.config.knobs.scenario):  # its levels run whole: timing under load cannot be spliced
        return None
    size = task.config.knobs.batch_size
    half = len(batches(task.cells, size)) // 2 * size
    if min(half, len(task.cells) - half) < MIN_SPLIT_CELLS:
        return None
    return [GroupTask(key, (ConfigTask(task.config, task.cells[:half]),)),
            GroupTask(key, (ConfigTask(task.config, task.cells[half:]),))]


def _key(config: Config, cell) -> tuple[str, str, int]:
    return config.config_id, cell.prompt.prompt_id, cell.seed


@dataclass
class _Shard:
    group: GroupTask
    call_base: dict[str, int]  # config_id → the first call index reserved for this shard
    attempt: int = 1
    received: set[tuple[str, str, int]] = field(default_factory=set)  # cells the driver has recorded
    ended: set[str] = field(default_factory=set)  # configs this shard has ended

    def remainder(self) -> GroupTask | None:
        """What is left of the shard: the cells not received, of the configs it has not ended."""
        rest = []
        for task in self.group.configs:
            cells = tuple(c for c in task.cells if _key(task.config, c) not in self.received)
            if cells and task.config.config_id not in self.ended:
                rest.append(ConfigTask(task.config, cells))
        return GroupTask(self.group.load_key, tuple(rest)) if rest else None


_SEVERITY = {"done": 0, "skipped": 1, "failed": 2}


@dataclass
class _ConfigLedger:
    n_cells: int  # in this run's plan
    open_shards: int = 0
    next_call: int = 0  # call indices handed out to shards, counted from the recorder's base
    started: bool = False
    status: str = "done"
    reason: str = ""
    facts: ConfigFacts = field(default_factory=ConfigFacts)


class _Replay:
    """Replays the actors' events into the driver's sink. A config split into several shards starts once,
    its shards get disjoint call indices, and it ends once, with the worst status among its shards."""

    def __init__(self, sink: ResultSink, plan: RunPlan):
        self.sink = sink
        self.configs = {t.config.config_id: _ConfigLedger(len(t.cells)) for g in plan.groups for t in g.configs}

    def open(self, group: GroupTask, attempt: int = 1) -> _Shard:
        base = {}
        for task in group.configs:
            ledger = self.configs[task.config.config_id]
            base[task.config.config_id] = ledger.next_call
            ledger.next_call += len(batches(task.cells, task.config.knobs.batch_size))
            ledger.open_shards += 1
        return _Shard(group, base, attempt)

    def apply(self, shard: _Shard, kind: str, args: tuple) -> None:
        if kind == "config_started":
            config, _ = args
            ledger = self.configs[config.config_id]
            if not ledger.started:
                ledger.started = True
                self.sink.config_started(config, ledger.n_cells)
        elif kind == "cells_done":
            (event,) = args
            shard.received.update(_key(event.config, c) for c in event.cells)
            base = shard.call_base[event.config.config_id]
            self.sink.cells_done(replace(event, call_index=base + event.call_index))
        elif kind == "level_done":  # a load config runs whole in one shard (its levels cannot be spliced)
            (event,) = args
            shard.received.update(_key(event.config, s.cell) for s in event.served)
            self.sink.level_done(event)
        elif kind == "config_ended":
            (event,) = args
            self.end(shard, event)
        elif kind == "config_profiled":  # each shard of a split config profiles; the last one's stays
            self.sink.config_profiled(*args)
        elif kind == "group_ended":
            self.sink.group_ended(*args)

    def end(self, shard: _Shard, event: ConfigEnded) -> None:
        config, status, reason, cells = event.config, event.status, event.reason, event.cells
        shard.received.update(_key(config, c) for c in cells)
        shard.ended.add(config.config_id)
        ledger = self.configs[config.config_id]
        ledger.open_shards -= 1
        if _SEVERITY[status] > _SEVERITY[ledger.status]:
            ledger.status, ledger.reason = status, reason
        ledger.facts = ledger.facts.merged(event.facts)
        last = ledger.open_shards == 0
        final = last and (status, reason) == (ledger.status, ledger.reason)
        if cells and not final:  # this shard's cells, with its own status
            self.sink.config_ended(ConfigEnded(config, status, reason, cells, ledger.facts))
        if last:
            self.sink.config_ended(ConfigEnded(config, ledger.status, ledger.reason, cells if final else (),
                                               ledger.facts))

    def fail(self, shard: _Shard, rest: GroupTask, reason: str) -> None:
        for task in rest.configs:
            self.end(shard, ConfigEnded(task.config, "failed", reason, task.cells))

    def close(self, shard: _Shard) -> None:
        """A lost shard: configs it held that no other shard holds end with the status they have."""
        for task in shard.group.configs:
            if task.config.config_id not in shard.ended:
                ledger = self.configs[task.config.config_id]
                ledger.open_shards -= 1
                if ledger.open_shards == 0:
                    self.sink.config_ended(ConfigEnded(task.config, ledger.status, ledger.reason, (), ledger.facts))


@dataclass
class _Actor:
    handle: Any
    index: int
    info: dict | None = None  # from describe(), once the actor has started
    shard: _Shard | None = None
    loaded: set[tuple] = field(default_factory=set)  # load keys of the shards it ran
    cells: int = 0
    images: int = 0
    config_ids: set[str] = field(default_factory=set)
    died: str = ""

    def record(self) -> dict:
        return {"actor": self.index, **(self.info or {}), "cells": self.cells, "images": self.images,
                "config_ids": sorted(self.config_ids), **({"died": self.died} if self.died else {})}


class RayExecutor:
    """Runs a plan's load groups on Ray actors; after ``execute``, ``actors`` describes each actor."""

    def __init__(self, options: RayOptions):
        self.options = options
        self.ray = import_ray()
        self.actors: list[dict] = []
        self._owns_ray = False

    def _connect(self):
        ray = self.ray
        if ray.is_initialized():
            return ray
        address = self.options.address or os.environ.get("RAY_ADDRESS")
        quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
        try:
            if address and "://" in address:  # Ray Client: it takes its own options
                ray.init(address=address)
            elif address:
                ray.init(address=address, **quiet)
            else:  # a local instance on this machine, whose actors import what this process imports
                path = os.pathsep.join(p for p in sys.path if p)
                ray.init(address="local", include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}},
                         **quiet)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"executor ray: cannot join the Ray cluster at '{address}': {e}") from None
        self._owns_ray = True
        return ray

    def resolve_device(self, device: str) -> str:
        """Where actors run: ``auto`` is cuda when the cluster has GPUs; each actor sees its GPU as cuda:0."""
        gpus = self._connect().cluster_resources().get("GPU", 0)
        if device == "auto":
            return "cuda" if gpus else "cpu"
        if device.startswith("cuda"):
            if not gpus:
                raise UserError(f"--device {device}: the Ray cluster has no GPU; use --device cpu")
            return "cuda"
        if device != "cpu":
            raise UserError(f"--device must be auto, cpu or cuda[:N], got '{device}'")
        return device

    def execute(self, plan: RunPlan, sink: ResultSink) -> None:
        ray = self._connect()
        sweep = None
        try:
            if plan.groups:
                sweep = _Sweep(ray, self.options, plan, sink)
                sweep.run()
        finally:
            if sweep is not None:
                sweep.kill_all()
                self.actors = [a.record() for a in sweep.actors]
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False


class _Sweep:
    """One execution: the actor pool, the shards waiting for an actor, and the driver's event loop."""

    def __init__(self, ray, options: RayOptions, plan: RunPlan, sink: ResultSink):
        self.ray, self.options, self.plan = ray, options, plan
        self.device = plan.devices[0]
        self.replay = _Replay(sink, plan)
        n, self.actor_options = self._pool_size()
        shards = split_groups(plan.groups, n)
        self.n_actors = min(n, len(shards))
        self.pending: deque[_Shard] = deque(self.replay.open(g) for g in shards)
        self.actors: list[_Actor] = []
        self.inflight: dict[Any, _Actor] = {}  # the one describe() or next_events() of each live actor
        self.problems: list[str] = []
        self.batches = 0
        self.stopping = False  # after Ctrl-C: actors finish their current call, nothing new starts

    def _pool_size(self) -> tuple[int, dict]:
        """How many actors, and the resources of each: a GPU (half of one with share_gpus), else CPUs."""
        resources = self.ray.cluster_resources()
        cpus = self.options.cpus_per_actor
        if self.device.startswith("cuda"):
            per_gpu = 2 if self.options.share_gpus else 1
            n, each = int(resources.get("GPU", 0)) * per_gpu, {"num_gpus": 1 / per_gpu, "num_cpus": cpus}
            if n == 0:
                raise UserError("executor ray: the Ray cluster has no GPU now; use --device cpu")
        else:
            n, each = int(resources.get("CPU", 0)) // cpus, {"num_cpus": cpus}
            if n == 0:
                raise UserError(f"executor ray: cpus_per_actor={cpus}, but the cluster has "
                                f"{resources.get('CPU', 0):g} CPUs")
        return min(n, self.options.max_actors or n), each

    def _spawn(self) -> None:
        backends = {name: BACKENDS.get(name) for name in
                    {t.config.knobs.backend for g in self.plan.groups for t in g.configs}}
        remote = self.ray.remote(ShardRunner).options(max_concurrency=2, max_restarts=0, **self.actor_options)
        handle = remote.remote(self.device, self.plan.timing, self.plan.trust_remote_code,
                               self.options.cpus_per_actor, backends)
        actor = _Actor(handle, len(self.actors))
        self.actors.append(actor)
        self.inflight[handle.describe.remote()] = actor

    def run(self) -> None:
        for _ in range(self.n_actors):
            self._spawn()
        while self.pending or any(a.shard is not None for a in self.actors):
            if not self.stopping:
                try:
                    check_stop()
                except StopRequested:
                    self.stopping = True
                    self.pending.clear()
                    for actor in self.actors:
                        if actor.shard is not None:
                            actor.handle.stop.remote()
            ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                self._receive(ref)
            if not self.stopping:
                self._dispatch()
        if self.stopping:
            raise StopRequested()
        if self.problems:
            unique = list(dict.fromkeys(self.problems))
            raise UserError(unique[0], problems=unique)

    def _receive(self, ref) -> None:
        actor = self.inflight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            self._lost(actor, e)
            return
        if actor.info is None:  # describe(): the actor is up
            actor.info = result
            return
        self._apply(actor, result)
        if actor.shard is not None:
            self.inflight[actor.handle.next_events.remote()] = actor
        self.batches += 1
        if AFTER_BATCH is not None:
            AFTER_BATCH(self.batches, [a.handle for a in self.actors if a.shard is not None])

    def _apply(self, actor: _Actor, events: list[tuple]) -> None:
        shard = actor.shard
        for kind, args in events:
            if kind == _END:
                actor.shard = None
            elif kind == "user_error":
                self.problems.extend(args[0])
            elif kind == "crash":
                raise RuntimeError(f"a Ray actor ({actor.info}) failed:\n{args[0]}")
            else:
                self.replay.apply(shard, kind, args)
                if kind == "cells_done":
                    event = args[0]
                    actor.cells += len(event.cells)
                    actor.images += sum(i.status == "ok" for i in event.outcome.images) if event.outcome else 0
                    actor.config_ids.add(event.config.config_id)
                elif kind == "level_done":
                    event = args[0]
                    actor.cells += len(event.served)
                    actor.images += sum(s.status == "ok" for s in event.served)
                    actor.config_ids.add(event.config.config_id)

    def _dispatch(self) -> None:
        for actor in self.actors:
            if not self.pending:
                return
            if actor.died or actor.info is None or actor.shard is not None:
                continue
            # a shard of a group this actor has not loaded yet, if there is one
            shard = next((s for s in self.pending if s.group.load_key not in actor.loaded), self.pending[0])
            self.pending.remove(shard)
            actor.shard = shard
            actor.loaded.add(shard.group.load_key)
            actor.handle.start.remote(shard.group)
            self.inflight[actor.handle.next_events.remote()] = actor

    def _lost(self, actor: _Actor, error: Exception) -> None:
        """An actor died: what its shard had not sent runs again elsewhere, and a replacement starts."""
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        actor.died = reason
        if getattr(error, "actor_init_failed", False):
            raise UserError(f"executor ray: an actor could not start ({str(error).strip()[-500:]}); is this "
                            "t2ibench installed on every node?")
        if len(self.actors) > self.n_actors * (MAX_ATTEMPTS + 1):
            raise RuntimeError(f"executor ray: {plural(len(self.actors), 'actor')} started and died; last: {reason}")
        self.ray.kill(actor.handle)  # one that is only unreachable must not go on working
        shard, actor.shard = actor.shard, None
        if shard is not None and not self.stopping:
            rest = shard.remainder()
            if rest is not None:
                if shard.attempt < MAX_ATTEMPTS:
                    self.pending.appendleft(self.replay.open(rest, shard.attempt + 1))
                else:
                    self.replay.fail(shard, rest, f"its Ray actor died {shard.attempt} times (last: {reason})")
            self.replay.close(shard)
        if self.pending:
            self._spawn()

    def kill_all(self) -> None:
        for actor in self.actors:
            if not actor.died:
                self.ray.kill(actor.handle)
