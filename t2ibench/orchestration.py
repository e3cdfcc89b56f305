"""One benchmark run, end to end: choose the run directory, plan the missing cells, execute, score, report.

This module sits above the harness (generation), the metrics and the reports, and holds the
Python API's :class:`Run` (``t2ibench.run`` / ``t2ibench.open_run``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from t2ibench.base import plural
from t2ibench.errors import RunInterrupted, UserError, disk_full
from t2ibench.executors import ExecutorChoice, parse_executor
from t2ibench.harness.environment import resolve_device
from t2ibench.harness.interrupt import StopRequested, stop_on_sigint
from t2ibench.harness.plan import make_plan
from t2ibench.harness.recorder import Observer, StoreRecorder
from t2ibench.harness.worker import GroupReport
from t2ibench.store import SCHEMA_VERSION, RunStore, cell_records
from t2ibench.suites import Suite

RUNS_ROOT = Path("t2ibench-runs")


def choose_run_dir(suite: Suite, out: str | Path | None, fresh: bool) -> tuple[Path, str]:
    """The run directory and why: an explicit --out, the latest unfinished run of this suite, or a new one."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: is an existing file, not a run directory; give a new or existing folder")
        if fresh and (out / "run.sqlite").exists():
            _erase_run(out)
            return out, "fresh"
        return out, "resume" if (out / "run.sqlite").exists() else "new"
    if not fresh:
        for candidate in sorted(RUNS_ROOT.glob(f"{suite.name}-*"), reverse=True):
            manifest = _read_manifest(candidate)
            if manifest and manifest.get("status") != "complete" and manifest.get("suite_hash") == suite_hash(suite):
                return candidate, "resume"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return RUNS_ROOT / f"{suite.name}-{stamp}", "new"


def _erase_run(run_dir: Path) -> None:
    for name in ("run.sqlite", "run.sqlite-wal", "run.sqlite-shm", "manifest.json", "cells.csv", "results.csv",
                 "report.md", "report.html", "run.log"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "images", ignore_errors=True)
    shutil.rmtree(run_dir / "profiles", ignore_errors=True)


def _read_manifest(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def suite_hash(suite: Suite) -> str:
    import hashlib

    resolved = suite.resolved()
    resolved.pop("source_path", None)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


def write_manifest(store: RunStore, suite: Suite, status: str, counts: dict, errors: list[str] | None = None) -> None:
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "suite_hash": suite_hash(suite),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "suite": suite.resolved(),
        "environment": store.get_meta("environment"),
    }
    if errors:  # user errors met after generation (a metric that could not score): the run still reports
        manifest["errors"] = errors
    if store.get_meta("actors"):  # a Ray run: its executor options (share_gpus) and each actor's node and GPU
        manifest.update(executor=store.get_meta("executor"), actors=store.get_meta("actors"))
    tmp = store.run_dir / ".manifest.json.tmp"
    try:
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(tmp, store.run_dir / "manifest.json")
    except OSError as e:
        tmp.unlink(missing_ok=True)
        e.filename = e.filename or str(store.run_dir / "manifest.json")
        raise


def _counts(store: RunStore) -> dict:
    counts: dict[str, int] = {}
    for c in cell_records(store):
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return counts


@contextmanager
def run_guard(run_dir: Path, total: int) -> Iterator[None]:
    """A Ctrl-C anywhere in a run becomes :class:`RunInterrupted` (after the store has closed, every
    committed cell kept), and a full disk a one-line :class:`DiskFullError` naming the path."""
    try:
        yield
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir, _done_count(run_dir), total, immediate=True) from None
    except Exception as e:
        full = disk_full(e, run_dir)
        if full is None:
            raise
        raise full from e


def _done_count(run_dir: Path) -> int:
    import sqlite3
    from contextlib import closing

    db = (run_dir / "run.sqlite").resolve()
    try:
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute("SELECT count(*) FROM cells WHERE status IN ('ok', 'nan')").fetchone()[0]
    except sqlite3.Error:
        return 0


def _done(store: RunStore, config, prompts, seeds) -> set:
    """The cells of a config that need no work. A load-scenario config is all or nothing: done once its final
    level is recorded (a level is atomic: timing under load cannot be spliced), else measured again whole."""
    from t2ibench.suites.scenario import is_load

    if not is_load(config.knobs.scenario):
        return store.done_cells(config.config_id)
    finished = any(lv["final"] for lv in store.levels() if lv["config_id"] == config.config_id)
    return {(p.prompt_id, s) for p in prompts for s in seeds} if finished else set()


def sweep_seconds(groups: list[GroupReport]) -> float:
    """Wall time during which some group was generating: the union of the groups' generation spans.

    Model load and unload lie outside the spans, so they are excluded without being subtracted,
    and groups that run at the same time (on several devices) are not counted twice.
    """
    total, end = 0.0, float("-inf")
    for start, stop in sorted((g.generate_start, g.generate_end) for g in groups):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _plain(value):
    """A load key's part as JSON: options models as their dicts (as a suite writes them)."""
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def choose_executor(suite: Suite, executor: str | ExecutorChoice | None,
                    options: dict | None = None) -> ExecutorChoice:
    """The CLI's ``--executor``/``--executor-opt`` win over the suite's ``executor:``."""
    if isinstance(executor, ExecutorChoice):
        return executor
    if executor is None and not options:
        return suite.executor
    name = executor or suite.executor.name
    base = suite.executor.options.model_dump() if name == suite.executor.name else {}
    return parse_executor(name, {**base, **(options or {})})


def check_models(suite: Suite) -> None:
    """Every config's model passes its backend's check (a local folder exists, a random name is known);
    all problems in one UserError, each ``file:line: model: ...`` as the suite's schema errors read."""
    from t2ibench.backends import BACKENDS
    from t2ibench.suites.loader import model_problem

    problems = []
    for backend, model in dict.fromkeys((c.knobs.backend, c.model) for c in suite.configs()):
        try:
            BACKENDS.get(backend).check_model(model)
        except UserError as e:
            local = not model.startswith("random:") and not Path(model).expanduser().is_absolute()
            where = f" (relative model paths are resolved from the current folder, {Path.cwd()})" \
                if local and "does not exist" in str(e) and suite.source_path is None else ""
            problems.append(model_problem(suite, model, f"{e}{where}"))
    if problems:
        raise UserError(problems[0], problems=problems)


class RunUserError(UserError):
    """User errors met once the run had started (a metric that cannot score, a model a worker could not load):
    the reports and manifest of what ran are written; ``run_dir`` holds them. The CLI prints the summary, exit 2."""

    def __init__(self, problems: list[str], run_dir: Path):
        super().__init__(problems[0], problems=problems)
        self.run_dir = run_dir


def preflight_run(suite: Suite, device: str, metrics: bool, log: Callable[[str], None]) -> None:
    """The preflight at the start of a run: its errors are one UserError (nothing is generated), its warnings
    (configs that will be skipped, a metric given too few images) are logged."""
    from t2ibench.suites.preflight import preflight

    found = preflight(suite, device=device, metrics=metrics, find_weights=True)
    if found.errors:
        raise UserError(found.errors[0], problems=found.errors)
    for line in found.skips + found.few_images:
        log(f"warning: {line}")


def execute(suite: Suite, *, out: str | Path | None = None, device: str = "auto",
            executor: str | ExecutorChoice | None = None, executor_options: dict | None = None,
            fresh: bool = False, observer: Observer | None = None, metrics: bool = True,
            log: Callable[[str], None] = lambda msg: None,
            on_run_dir: Callable[[Path], None] = lambda run_dir: None, profile: bool = False) -> "Run":
    """Run ``suite`` into a run directory (resuming what is there) and return the Run.

    ``on_run_dir(run_dir)`` is called once the directory exists (the CLI starts its run.log there).
    ``profile``: set the ``profile`` knob of every config (``run --profile``).
    """
    if profile:
        suite = profiled(suite)
    from t2ibench.harness.environment import collect_environment
    from t2ibench.reports import write_reports

    choice = choose_executor(suite, executor, executor_options)
    runner = choice.make()
    device = getattr(runner, "resolve_device", resolve_device)(device)  # a cluster's executor asks the cluster
    run_dir, why = choose_run_dir(suite, out, fresh)
    configs, prompts, seeds = suite.configs(), suite.prompt_list(), suite.seed_list()
    total = len(configs) * len(prompts) * len(seeds)
    check_models(suite)
    preflight_run(suite, device, metrics, log)  # before any model loads or image is generated
    with run_guard(run_dir, total), RunStore.open(run_dir, write=True) as store:
        on_run_dir(run_dir)
        if store.lock_note:
            log(store.lock_note)
        previous = store.get_meta("suite")
        if previous and previous.get("name") != suite.name:
            raise UserError(f"run directory '{run_dir}' holds suite '{previous.get('name')}', not '{suite.name}'; "
                            "use another --out or --fresh")
        environment = collect_environment(device)
        old_env = store.get_meta("environment")
        if old_env and {k: v for k, v in old_env.items() if k != "torch_threads"} != \
                {k: v for k, v in environment.items() if k != "torch_threads"}:
            log("note: the environment differs from the one this run started in; see manifest.json")
            store.set_meta("environment_history", (store.get_meta("environment_history") or []) + [old_env])
        store.set_meta("environment", environment)
        store.set_meta("suite", suite.resolved())
        for position, config in enumerate(configs):
            store.add_config(position, config)
        for partial in run_dir.glob("images/*/.*.tmp"):  # left by a killed run; never recorded
            partial.unlink(missing_ok=True)
        done = {c.config_id: _done(store, c, prompts, seeds) for c in configs}
        plan = make_plan(configs, prompts, seeds, done, suite.timing, (device,),
                         trust_remote_code=suite.trust_remote_code, base_dir=suite.base_dir())
        log(f"{'resuming' if why == 'resume' else 'writing'} {run_dir}: {plural(plan.n_cells, 'cell')} to generate"
            + (f", {plan.skipped_done} already done" if plan.skipped_done else ""))
        planned = {t.config.config_id for g in plan.groups for t in g.configs} | set(store.profile_ops())
        unprofiled = [c for c in configs if c.knobs.profile and c.config_id not in planned]
        if unprofiled:  # a profile is taken after a config's timed calls: a finished config makes none
            log(f"note: {plural(len(unprofiled), 'config')} with profile: true already done, so not profiled "
                "(use --fresh or another --out to profile them)")
        write_manifest(store, suite, "running", _counts(store))
        recorder = StoreRecorder(store, observer, background=device.startswith("cuda"))
        recorder.observer.run_started(plan.n_cells)
        started = time.perf_counter()
        deferred: list[UserError] = []  # raised after the reports, so finished work is always reported
        with stop_on_sigint(log) as stop:  # a first Ctrl-C stops after the current call, a second at once
            try:
                runner.execute(plan, recorder)
            except UserError as e:
                deferred.append(e)
            except StopRequested:
                pass
            finally:
                try:
                    recorder.close()  # every finished cell is on disk before anything else happens
                finally:
                    generation_s = time.perf_counter() - started
                    write_manifest(store, suite, "incomplete", _counts(store))
        store.set_meta("generation_s", generation_s)
        store.set_meta("sweep_s", sweep_seconds(recorder.groups))  # excludes model load and unload
        store.set_meta("groups", [{"load_key": [_plain(v) for v in g.load_key], "device": g.device, "load_ms": g.load_ms,
                                   "unload_ms": g.unload_ms, "generate_s": g.generate_end - g.generate_start}
                                  for g in recorder.groups])
        store.set_meta("executor", {"name": choice.name, **choice.options.model_dump(mode="json")})
        actors = getattr(runner, "actors", [])  # where a distributed run's cells ran, added to earlier sessions'
        if actors:
            earlier = store.get_meta("actors") or []
            session = max((a["session"] for a in earlier), default=0) + 1
            store.set_meta("actors", earlier + [{"session": session, **a} for a in actors])
        if stop.requested:  # the reports of what is done; scoring waits for the resumed run
            for config in store.configs():
                if config["status"] == "running":
                    store.update_config(config["config_id"], status="interrupted", reason="stopped by Ctrl-C")
        elif metrics and suite.metrics:
            try:
                score_run(store, suite, device, log=log, progress=getattr(observer, "scoring", None))
            except UserError as e:
                deferred.append(e)
            except Exception:
                write_reports(store)  # a bug in scoring must not also lose the reports of what was generated
                raise
        write_reports(store)
        counts = _counts(store)
        complete = counts.get("ok", 0) + counts.get("nan", 0) == total and not stop.requested
        problems = list(dict.fromkeys(p for e in deferred for p in e.problems))
        write_manifest(store, suite, "complete" if complete else "incomplete", counts, errors=problems)
        if stop.requested:
            raise RunInterrupted(run_dir, counts.get("ok", 0) + counts.get("nan", 0), total)
    if deferred:
        raise RunUserError(problems, run_dir)
    return Run(run_dir)


# --- scoring -------------------------------------------------------------------------------------

def profiled(suite: Suite) -> Suite:
    """The suite with ``profile: true`` in every config (a measurement knob: the config ids stay)."""
    copy = suite.model_copy()
    copy._configs = [c.model_copy(update={"knobs": c.knobs.model_copy(update={"profile": True})})
                     for c in suite.configs()]
    return copy


def _resolved_metrics(suite: Suite) -> dict:
    """The suite's metric options with ``against:`` folders and .npz files resolved against the suite's folder."""
    out = {}
    for name, options in suite.metrics.items():
        against = getattr(options, "against", "reference")
        if against != "reference":
            options = options.model_copy(update={"against": str(suite.resolve_path(against))})
        out[name] = options
    return out


def score_run(store: RunStore, suite: Suite, device: str, log: Callable[[str], None] = lambda m: None,
              progress: Callable[[str, int, int], None] | None = None) -> None:
    """Metrics over the ok images of the suite's configs; features are cached in the run directory.
    ``progress``: the per-batch hook of :func:`~t2ibench.metrics.evaluate.evaluate` (a progress bar)."""
    from t2ibench.metrics.evaluate import ImageRecord, evaluate

    images = [
        ImageRecord(c["config_id"], c["prompt_id"], c["prompt"], c["seed"], store.run_dir / c["image_path"])
        for c in cell_records(store) if c["status"] == "ok" and c["image_path"]
    ]
    if not images:
        log("no images to score")
        return
    reference = next((c.config_id for c in suite.configs() if c.is_reference), None)
    log(f"scoring {plural(len(images), 'image')}: {', '.join(suite.metrics)}")
    results = evaluate(_resolved_metrics(suite), images, reference, device=device,
                       cache_dir=store.run_dir / "features", progress=progress)
    store.put_metrics(results)
    for note in dict.fromkeys(n for r in results for n in r.extra.get("notes", []) if "random weights" not in n):
        log(f"note: {note}")


# --- the Python API ------------------------------------------------------------------------------

class Run:
    """A run directory; tables are read from its store on each call."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        RunStore.open(self.run_dir).close()  # validates the directory

    def _store(self) -> RunStore:
        return RunStore.open(self.run_dir)

    def results(self):
        """One row per config (pandas DataFrame), the columns of results.csv."""
        from t2ibench.reports.tables import results_frame

        with self._store() as store:
            return results_frame(store)

    def cells(self):
        """One row per image (pandas DataFrame), the columns of cells.csv."""
        from t2ibench.reports.tables import cells_frame

        with self._store() as store:
            return cells_frame(store)

    def executor(self) -> dict:
        """The executor of the latest session and its options, and ``actors``: each Ray actor of every session
        (numbered from 1) with its node, GPU, and the cells and images it ran."""
        with self._store() as store:
            return {**(store.get_meta("executor") or {}), "actors": store.get_meta("actors") or []}

    def recommendation(self):
        """The recommended config and why (a :class:`~t2ibench.reports.recommend.Recommendation`), as the
        reports show it."""
        from t2ibench.reports.context import recommendation_of

        with self._store() as store:
            return recommendation_of(store)

    @property
    def suite(self) -> dict:
        """The resolved suite this directory was last run with."""
        from t2ibench.store import current_suite

        with self._store() as store:
            return current_suite(store)

    @property
    def n_failed(self) -> int:
        cells = self.cells()
        return int((cells["status"] == "failed").sum()) if len(cells) else 0

    @property
    def report_path(self) -> Path:
        html = self.run_dir / "report.html"
        return html if html.exists() else self.run_dir / "report.md"

    def __repr__(self) -> str:
        return f"Run('{self.run_dir}')"


def run(suite, out: str | Path | None = None, device: str = "auto", *, executor: str | None = None,
        executor_options: dict | None = None, fresh: bool = False, metrics: bool = True,
        profile: bool = False) -> Run:
    """Run a suite (a Suite, a path or a builtin name) and return its Run; ``profile``: trace one more call
    of every config (see :func:`execute`)."""
    from t2ibench.suites import load_suite

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    return execute(suite, out=out, device=device, executor=executor, executor_options=executor_options,
                   fresh=fresh, metrics=metrics, profile=profile)


def open_run(run_dir: str | Path) -> Run:
    return Run(run_dir)
