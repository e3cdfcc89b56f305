"""One benchmark run: choose the run directory, plan the missing cells, execute, score, report."""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from t2ibench.errors import RunInterrupted, UserError, disk_full
from t2ibench.harness.executors import EXECUTORS
from t2ibench.harness.interrupt import StopRequested, stop_on_sigint
from t2ibench.harness.loading import check_model_spec
from t2ibench.harness.plan import make_plan
from t2ibench.harness.recorder import Observer, StoreRecorder
from t2ibench.harness.store import SCHEMA_VERSION, RunStore
from t2ibench.suites import Suite

RUNS_ROOT = Path("t2ibench-runs")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda[:N], got '{device}'")
    return device


def choose_run_dir(suite: Suite, out: str | Path | None, fresh: bool) -> tuple[Path, str]:
    """The run directory and why: an explicit --out, the latest unfinished run of this suite, or a new one."""
    if out is not None:
        out = Path(out)
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
                 "report.md", "report.html"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "images", ignore_errors=True)


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


def write_manifest(store: RunStore, suite: Suite, status: str, counts: dict) -> None:
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "suite_hash": suite_hash(suite),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "suite": suite.resolved(),
        "environment": store.get_meta("environment"),
    }
    tmp = store.run_dir / ".manifest.json.tmp"
    try:
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(tmp, store.run_dir / "manifest.json")
    except OSError as e:
        tmp.unlink(missing_ok=True)
        e.filename = e.filename or str(store.run_dir / "manifest.json")
        raise


def _counts(store: RunStore) -> dict:
    from t2ibench.reports.tables import cell_records

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


def execute(suite: Suite, *, out: str | Path | None = None, device: str = "auto", executor: str = "local",
            fresh: bool = False, observer: Observer | None = None, metrics: bool = True,
            log: Callable[[str], None] = lambda msg: None):
    """Run ``suite`` into a run directory (resuming what is there) and return the Run."""
    from t2ibench.harness.api import Run
    from t2ibench.harness.environment import collect_environment
    from t2ibench.reports import write_reports

    make_executor = EXECUTORS.get(executor)
    device = resolve_device(device)
    run_dir, why = choose_run_dir(suite, out, fresh)
    configs, prompts, seeds = suite.configs(), suite.prompt_list(), suite.seed_list()
    total = len(configs) * len(prompts) * len(seeds)
    for model in dict.fromkeys(c.model for c in configs):
        check_model_spec(model)
    with run_guard(run_dir, total), RunStore.open(run_dir, write=True) as store:
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
        done = {c.config_id: store.done_cells(c.config_id) for c in configs}
        plan = make_plan(configs, prompts, seeds, done, suite.timing, device)
        log(f"{'resuming' if why == 'resume' else 'writing'} {run_dir}: {plan.n_cells} cells to generate"
            + (f", {plan.skipped_done} already done" if plan.skipped_done else ""))
        write_manifest(store, suite, "running", _counts(store))
        recorder = StoreRecorder(store, observer, background=device.startswith("cuda"))
        recorder.observer.run_started(plan.n_cells)
        started = time.perf_counter()
        deferred: list[UserError] = []  # raised after the reports, so finished work is always reported
        with stop_on_sigint(log) as stop:  # a first Ctrl-C stops after the current call, a second at once
            try:
                make_executor().execute(plan, recorder)
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
        store.set_meta("sweep_s", generation_s - recorder.model_lifecycle_ms / 1000.0)  # excludes load/unload
        if stop.requested:  # the reports of what is done; scoring waits for the resumed run
            for config in store.configs():
                if config["status"] == "running":
                    store.update_config(config["config_id"], status="interrupted", reason="stopped by Ctrl-C")
        elif metrics and suite.metrics:
            from t2ibench.harness.scoring import score_run

            try:
                score_run(store, suite, device, log=log)
            except UserError as e:
                deferred.append(e)
        write_reports(store)
        counts = _counts(store)
        complete = counts.get("ok", 0) + counts.get("nan", 0) == total and not stop.requested
        write_manifest(store, suite, "complete" if complete else "incomplete", counts)
        if stop.requested:
            raise RunInterrupted(run_dir, counts.get("ok", 0) + counts.get("nan", 0), total)
    if deferred:
        problems = [p for e in deferred for p in e.problems]
        raise UserError(problems[0], problems=problems)
    return Run(run_dir)
