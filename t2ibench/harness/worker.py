"""The worker: runs the configs of one load group on one backend and reports each result to a sink.

It never touches the store itself, so the same worker serves the local executor (sink writes
to the store in-process) and a remote one (sink ships results back to the driver). A config's
``upscale`` stage runs here, after the engine's call and inside its timing, the same for every backend.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from t2ibench.backends import BACKENDS, BackendSpec
from t2ibench.errors import SkipConfig, UserError
from t2ibench.backends.engine import CallOutcome, Engine, LoadedModel, ProfiledOp
from t2ibench.backends.upscale import Upscalers, UpscaleStage
from t2ibench.harness.events import CellsDone, ConfigEnded, ConfigFacts, LevelDone
from t2ibench.harness.interrupt import check_stop
from t2ibench.harness.plan import CellTask, ConfigTask, GroupTask
from t2ibench.store import profile_relpath
from t2ibench.suites import Config, Timing
from t2ibench.suites.scenario import is_load

TOP_OPS = 20  # operators of a profiled call kept in the store, the costliest by self time


@dataclass(frozen=True)
class GroupReport:
    """How one load group went: model lifecycle times and the wall-clock span of its generation
    (epoch seconds, so that spans from several workers can be merged)."""

    load_key: tuple
    device: str
    load_ms: float
    unload_ms: float
    generate_start: float
    generate_end: float


class ResultSink(Protocol):
    def config_started(self, config: Config, n_cells: int) -> None: ...

    def config_ended(self, event: ConfigEnded) -> None:
        """status: done | skipped | failed; for skipped/failed, ``event.cells`` get that status and reason."""

    def cells_done(self, event: CellsDone) -> None: ...

    def level_done(self, event: LevelDone) -> None:
        """One load level: its requests, and the cells its requests served (none for a search's probe)."""

    def config_profiled(self, config: Config, trace: bytes, ops: list[ProfiledOp]) -> None:
        """The config's profiled call: its trace (gzipped JSON) and top operators, the costliest first."""

    def group_ended(self, report: GroupReport) -> None:
        """One group is done: its load/unload times and generation span (the sweep's time is their union)."""



def short_error(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def batches(cells: tuple[CellTask, ...], size: int) -> list[list[CellTask]]:
    return [list(cells[i:i + size]) for i in range(0, len(cells), size)]


class Worker:
    """Runs load groups on one device; it knows backends only through their specs and engines."""

    def __init__(self, device: str, timing: Timing, trust_remote_code: bool = False, base_dir: Path | None = None):
        self.device = device
        self.timing = timing
        self.trust_remote_code = trust_remote_code  # the suite's: code shipped with a model may run
        self.base_dir = base_dir  # the suite's folder: a trace scenario's file is relative to it
        self._engines: dict[str, Engine] = {}
        self._upscalers = Upscalers(device)  # loaded by the configs with `upscale:`, dropped after each group

    def engine(self, spec: BackendSpec) -> Engine:
        if spec.name not in self._engines:
            self._engines[spec.name] = spec.make_engine()
        return self._engines[spec.name]

    def run_group(self, group: GroupTask, sink: ResultSink) -> None:
        check_stop()  # a Ctrl-C stops between calls: before a load, a config, or a call (StopRequested)
        first = group.configs[0].config
        if is_load(first.knobs.scenario):  # requests over HTTP: the model loads in the endpoint, not here
            from t2ibench.harness.levels import run_load_group

            started = time.time()
            run_load_group(group, sink, device=self.device, timing=self.timing,
                           trust_remote_code=self.trust_remote_code, base_dir=self.base_dir)
            sink.group_ended(GroupReport(group.load_key, self.device, 0.0, 0.0, started, time.time()))
            return
        spec = BACKENDS.get(first.knobs.backend)
        t0 = time.perf_counter()
        try:
            model = self.engine(spec).load(first.model, first.knobs, self.device,
                                           trust_remote_code=self.trust_remote_code)
        except (SkipConfig, UserError) as e:
            status = "skipped" if isinstance(e, SkipConfig) else "failed"
            for task in group.configs:
                sink.config_ended(ConfigEnded(task.config, status, str(e), task.cells))
            if isinstance(e, UserError):
                raise
            return
        except Exception as e:  # a load failure fails this group only; the sweep goes on
            for task in group.configs:
                sink.config_ended(ConfigEnded(task.config, "failed", f"load failed: {short_error(e)}", task.cells,
                                              ConfigFacts(traceback=traceback.format_exc())))
            return
        load_ms = (time.perf_counter() - t0) * 1000.0
        generate_start = time.time()
        problems: list[str] = []
        try:
            for task in group.configs:
                try:
                    # export_ms: the part of the load an export engine spent exporting (near 0 from its cache)
                    self.run_config(model, spec, task, sink,
                                    ConfigFacts(load_ms=load_ms, export_ms=getattr(model, "export_ms", None)))
                except UserError as e:  # that config is recorded as failed; the group's others still run
                    problems.extend(e.problems)
        finally:
            generate_end = time.time()
            t0 = time.perf_counter()
            self._upscalers.close()
            model.close()
            sink.group_ended(GroupReport(group.load_key, self.device, load_ms, (time.perf_counter() - t0) * 1000.0,
                                         generate_start, generate_end))
        if problems:
            raise UserError(problems[0], problems=problems)

    def run_config(self, model: LoadedModel, spec: BackendSpec, task: ConfigTask, sink: ResultSink,
                   facts: ConfigFacts) -> None:
        config, knobs = task.config, task.config.knobs
        check_stop()
        sink.config_started(config, len(task.cells))
        groups = batches(task.cells, knobs.batch_size)
        # a compiling config compiles in its first call: that call is always a warm-up, never timed
        n_warmup = spec.warmup_calls(knobs, self.timing.warmup)
        stage: UpscaleStage | None = None
        try:
            applied = model.configure(knobs) or {}
            if knobs.upscale is not None:
                stage = self._upscalers.stage(knobs.upscale, knobs.precision, knobs.prompt_suffix)
                applied["upscale"] = stage.applied
            model.reset_peak_memory()
            first = _padded(groups[0], knobs.batch_size)
            warmup_ms = [model.warmup([c.prompt.text for c in first], [c.seed for c in first], knobs)
                         + (stage.warmup(len(first), knobs.width, knobs.height) if stage else 0.0)
                         for _ in range(n_warmup)]
        except SkipConfig as e:
            sink.config_ended(ConfigEnded(config, "skipped", str(e), task.cells))
            return
        except UserError as e:  # the user's to fix (a LoRA file that does not exist): recorded, then exit 2
            model.recover()
            sink.config_ended(ConfigEnded(config, "failed", str(e), task.cells))
            raise
        except Exception as e:
            setup_error = (f"setup failed: {short_error(e)}", traceback.format_exc())
        else:
            setup_error = None
        if setup_error is not None:
            model.recover()
            sink.config_ended(ConfigEnded(config, "failed", setup_error[0], task.cells,
                                          ConfigFacts(traceback=setup_error[1])))
            return
        facts = replace(facts, warmup_ms=sum(warmup_ms), applied=applied)
        recompiles, timed_ms, failures = 0, [], 0  # failures: consecutive failed calls
        for index, cells in enumerate(groups):
            check_stop()
            padded = _padded(cells, knobs.batch_size)  # a constant batch shape: no recompiles, fair per-call latency
            prompts, seeds = [c.prompt.text for c in padded], [c.seed for c in padded]
            try:
                outcomes = [_generate(model, stage, prompts, seeds, knobs) for _ in range(self.timing.repeats)]
            except SkipConfig as e:  # found at the first timed call when there is no warm-up
                sink.config_ended(ConfigEnded(config, "skipped", str(e),
                                              tuple(c for rest in groups[index:] for c in rest)))
                return
            except Exception as e:  # CUDA OOM among them: recorded, and the sweep goes on
                error = short_error(e)
            else:
                error = ""
            if error:
                model.recover()  # outside the except block: the failed call's frames, and tensors, are gone
                sink.cells_done(CellsDone(config, tuple(cells), None, error, model.peak_memory(), index))
                failures += 1
                rest = tuple(c for more in groups[index + 1:] for c in more)
                if failures >= self.timing.max_consecutive_failures and rest:
                    sink.config_ended(ConfigEnded(config, "skipped", f"skipped after {failures} consecutive "
                                                  f"failed calls (last: {error})", rest,
                                                  replace(facts, recompiles=recompiles)))
                    return
                continue
            failures = 0
            samples = [o.timing.latency_ms for o in outcomes]
            timed_ms += samples
            median = sorted(outcomes, key=lambda o: o.timing.latency_ms)[(len(outcomes) - 1) // 2]
            recompiles += sum(o.recompiles for o in outcomes)
            sink.cells_done(CellsDone(config, tuple(cells), median, "", model.peak_memory(), index, tuple(samples)))
        if spec.compiles(knobs) and warmup_ms and timed_ms:
            facts = replace(facts, compile_ms=compile_ms(warmup_ms[0], timed_ms))
        if knobs.profile and timed_ms:  # after the timed calls, so that it never enters their statistics
            applied["profile"] = self.profile_config(model, spec, config, groups[0], sink)
        sink.config_ended(ConfigEnded(config, "done", "", (), replace(facts, recompiles=recompiles)))

    def profile_config(self, model: LoadedModel, spec: BackendSpec, config: Config, cells: list[CellTask],
                       sink: ResultSink) -> str:
        """One more call of the config's first batch, traced by the engine's profiler; the trace and top operators
        go to the sink. Returns what ``applied`` records: the trace's path, or why there is none."""
        profile = getattr(model, "profile", None)
        if profile is None:
            return f"not taken: backend '{spec.name}' has no profiler"
        padded = _padded(cells, config.knobs.batch_size)
        try:
            with tempfile.TemporaryDirectory(prefix="t2ibench-profile-") as tmp:
                path = Path(tmp) / "trace.json.gz"
                ops = profile([c.prompt.text for c in padded], [c.seed for c in padded], config.knobs, path)
                trace = path.read_bytes()
        except SkipConfig as e:
            return f"not taken: {e}"
        except Exception as e:  # the timed calls stand; only the profile is missing
            error = short_error(e)
        else:
            error = ""
        if error:
            model.recover()
            return f"failed: {error}"
        sink.config_profiled(config, trace, list(ops)[:TOP_OPS])
        return profile_relpath(config.config_id)


def _generate(model: LoadedModel, stage: UpscaleStage | None, prompts: list[str], seeds: list[int],
              knobs) -> CallOutcome:
    """One timed call: the engine's, then the config's upscale stage (its time is part of the latency)."""
    outcome = model.generate(prompts, seeds, knobs)
    return stage.apply(outcome, prompts, seeds) if stage is not None else outcome


def compile_ms(first_call_ms: float, timed_ms: list[float]) -> float:
    """Compile time of a compiled config: its first call's time above a steady call's (the median timed
    call). It holds tracing, compilation, autotuning and CUDA-graph capture; never part of the latency."""
    steady = sorted(timed_ms)[(len(timed_ms) - 1) // 2]
    return max(first_call_ms - steady, 0.0)


def _padded(cells: list[CellTask], size: int) -> list[CellTask]:
    return cells + [cells[-1]] * (size - len(cells))
