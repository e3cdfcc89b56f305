"""The local result sink: writes images and rows to the run store.

On a GPU run a background thread does the writing, so PNG encoding and commits overlap the next
call while the CPU is idle. On a CPU run it writes in line between calls: there the generation
already uses every core, and a writer thread beside it slows each call more than it saves.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Protocol

from t2ibench.backends.engine import ProfiledOp
from t2ibench.harness.events import CellsDone, ConfigEnded, LevelDone
from t2ibench.harness.plan import CellTask
from t2ibench.harness.worker import GroupReport
from t2ibench.store import CallRow, CellRow, RunStore, image_relpath, profile_relpath, write_atomic, write_png_atomic
from t2ibench.suites import Config
from t2ibench.suites.scenario import is_load


class Observer(Protocol):
    """Progress display hooks (the CLI shows rich progress bars through these)."""

    def run_started(self, n_cells: int) -> None: ...

    def config_started(self, config: Config, n_cells: int) -> None: ...

    def cells_advanced(self, config: Config, n: int, timed: bool = True) -> None:
        """``n`` more cells are done: by a call (``timed``), or ended without one (skipped, failed)."""

    def config_ended(self, config: Config, status: str, reason: str) -> None: ...


class NullObserver:
    def run_started(self, n_cells): pass

    def config_started(self, config, n_cells): pass

    def cells_advanced(self, config, n, timed=True): pass

    def config_ended(self, config, status, reason): pass


class StoreRecorder:
    def __init__(self, store: RunStore, observer: Observer | None = None, background: bool = True):
        self.store = store
        self.observer = observer or NullObserver()
        self._call_base: dict[str, int] = {}  # per config: offset making this session's call indices unique
        self.groups: list[GroupReport] = []
        self._queue: queue.Queue = queue.Queue(maxsize=32)
        self._error: BaseException | None = None
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._write_loop, name="t2ibench-writer", daemon=True)
            self._thread.start()

    # -- ResultSink ------------------------------------------------------------------------------
    def config_started(self, config: Config, n_cells: int) -> None:
        self.flush()
        if is_load(config.knobs.scenario):  # a load config is measured whole again: no level of an earlier try stays
            self.store.clear_levels(config.config_id)
        self._call_base[config.config_id] = self.store.next_call_index(config.config_id)
        self.store.update_config(config.config_id, status="running", reason="")
        self.observer.config_started(config, n_cells)

    def cells_done(self, event: CellsDone) -> None:
        config, cells, outcome = event.config, event.cells, event.outcome
        vram, rss = event.peak
        index = self._call_base.get(config.config_id, 0) + event.call_index
        now = time.time()
        call = CallRow(config_id=config.config_id, call_index=index, status="failed", error=event.error,
                       batch_size=config.knobs.batch_size, n_images=len(cells), peak_vram_mb=vram, peak_rss_mb=rss,
                       created_at=now)
        if outcome is None:
            items = [(self._row(cell, config, now, status="failed", error=event.error, call_index=index), None)
                     for cell in cells]
        else:
            t = outcome.timing
            statuses = {image.status for image in outcome.images[:len(cells)]}
            call = replace(call, status="ok" if "ok" in statuses else "nan", samples=list(event.samples),
                           latency_ms=t.latency_ms, encode_ms=t.encode_ms, denoise_ms=t.denoise_ms,
                           decode_ms=t.decode_ms, step_ms=t.step_ms, recompiles=outcome.recompiles,
                           cache_hit_rate=outcome.cache_hit_rate, upscale_ms=t.upscale_ms)
            items = [(self._row(cell, config, now, status=image.status, error=image.error, call_index=index,
                                image_path=image_relpath(config.config_id, cell.prompt.prompt_id, cell.seed)
                                if image.status == "ok" else None),
                      image.pixels if image.status == "ok" else None)
                     for cell, image in zip(cells, outcome.images)]
        self._put(lambda: self._write(items, call))
        self.observer.cells_advanced(config, len(cells))

    def level_done(self, event: LevelDone) -> None:
        """The level and its requests; then each served cell with its own call (one request, one image), whose
        latency is its request's. Images land before the rows, and the level, its requests, calls and cells
        commit in one transaction: a level is atomic."""
        config, cid = event.config, event.config.config_id
        base, now = self._call_base.get(cid, 0), time.time()
        latency = {r.request_index: r.latency_ms for r in event.requests}
        work = []
        for served in event.served:
            index = base + served.request_index
            ms = latency[served.request_index]
            call = CallRow(config_id=cid, call_index=index, status=served.status, error=served.error, batch_size=1,
                           n_images=1, samples=[ms], latency_ms=ms, created_at=now)
            ok = served.status == "ok" and served.pixels is not None
            cell = served.cell
            row = self._row(cell, config, now, status=served.status, error=served.error, call_index=index,
                            image_path=image_relpath(cid, cell.prompt.prompt_id, cell.seed) if ok else None)
            work.append((call, row, served.pixels if ok else None))
        if event.served:  # a later level of this config gets calls of its own
            self._call_base[cid] = base + max(s.request_index for s in event.served) + 1
        self._put(lambda: self._write_level(event, work))
        if event.served:
            self.observer.cells_advanced(config, len(event.served))

    def config_ended(self, event: ConfigEnded) -> None:
        config, facts = event.config, event.facts
        if event.cells:
            now = time.time()
            status = "skipped" if event.status == "done" else event.status  # a done config's unserved cells
            items = [(self._row(c, config, now, status=status, error=event.reason), None) for c in event.cells]
            self._put(lambda: self._write(items, None))
            self.observer.cells_advanced(config, len(event.cells), timed=False)
        self.flush()
        self.store.update_config(
            config.config_id, status=event.status, reason=event.reason,
            load_ms=facts.load_ms, warmup_ms=facts.warmup_ms, compile_ms=facts.compile_ms,
            export_ms=facts.export_ms, recompiles=facts.recompiles or 0,
            **({"applied": json.dumps(facts.applied, sort_keys=True)} if facts.applied else {}),
        )
        self.observer.config_ended(config, event.status, event.reason)

    def config_profiled(self, config: Config, trace: bytes, ops: list[ProfiledOp]) -> None:
        write_atomic(self.store.run_dir / profile_relpath(config.config_id), trace)
        self.store.put_profile_ops(config.config_id, ops)

    def group_ended(self, report: GroupReport) -> None:
        self.groups.append(report)

    # -- writing ---------------------------------------------------------------------------------
    @staticmethod
    def _row(cell: CellTask, config: Config, created_at: float, **fields) -> CellRow:
        return CellRow(config_id=config.config_id, prompt_id=cell.prompt.prompt_id, seed=cell.seed,
                       prompt=cell.prompt.text, category=cell.prompt.category, created_at=created_at, **fields)

    def _put(self, work: Callable[[], None]) -> None:
        self._raise_if_failed()
        if self._thread is None:
            work()
        else:
            self._queue.put(work)

    def _landed(self, row: CellRow, pixels) -> CellRow:
        """The row, once its image is on disk (the image lands before its row commits)."""
        if pixels is None:
            return row
        return replace(row, image_sha256=write_png_atomic(self.store.run_dir / row.image_path, pixels))

    def _write(self, items: list[tuple[CellRow, Any]], call: CallRow | None) -> None:
        self.store.put_cells([self._landed(row, pixels) for row, pixels in items], call)

    def _write_level(self, event: LevelDone, work: list[tuple[CallRow, CellRow, Any]]) -> None:
        cells = [(call, self._landed(row, pixels)) for call, row, pixels in work]
        self.store.put_level(event.level, event.requests, cells)

    def _write_loop(self) -> None:
        while True:
            work = self._queue.get()
            try:
                if work is None:
                    return
                if self._error is None:
                    work()
            except BaseException as e:  # surfaced to the producer at its next put or flush
                self._error = e
            finally:
                self._queue.task_done()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing results failed: {self._error}") from self._error

    def flush(self) -> None:
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Write what is queued and stop the writer thread, also when a write failed or Ctrl-C cut the wait."""
        try:
            self.flush()
        finally:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None
