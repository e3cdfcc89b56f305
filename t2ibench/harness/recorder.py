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
from typing import Protocol

from t2ibench.backends.engine import CallOutcome, ProfiledOp
from t2ibench.harness.plan import CellTask
from t2ibench.harness.worker import GroupReport
from t2ibench.store import CallRow, CellRow, RunStore, image_relpath, profile_relpath, write_atomic, write_png_atomic
from t2ibench.suites import Config


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
        self._call_base[config.config_id] = self.store.next_call_index(config.config_id)
        self.store.update_config(config.config_id, status="running", reason="")
        self.observer.config_started(config, n_cells)

    def cells_done(self, config: Config, cells: list[CellTask], outcome: CallOutcome | None, error: str,
                   peak: tuple[float | None, float], call_index: int, samples: list[float]) -> None:
        vram, rss = peak
        index = self._call_base.get(config.config_id, 0) + call_index
        base = dict(config_id=config.config_id, peak_vram_mb=vram, peak_rss_mb=rss, call_index=index,
                    batch_size=config.knobs.batch_size, created_at=time.time())
        call = CallRow(config_id=config.config_id, call_index=index, status="failed", error=error,
                       batch_size=config.knobs.batch_size, n_images=len(cells), peak_vram_mb=vram, peak_rss_mb=rss,
                       created_at=base["created_at"])
        if outcome is None:
            items = [(self._row(cell, base, status="failed", error=error), None) for cell in cells]
        else:
            t = outcome.timing
            statuses = {image.status for image in outcome.images[:len(cells)]}
            call = CallRow(**{**call.__dict__, "status": "ok" if "ok" in statuses else "nan", "samples": samples,
                              "latency_ms": t.latency_ms, "encode_ms": t.encode_ms, "denoise_ms": t.denoise_ms,
                              "decode_ms": t.decode_ms, "step_ms": t.step_ms, "recompiles": outcome.recompiles,
                              "cache_hit_rate": outcome.cache_hit_rate, "upscale_ms": t.upscale_ms})
            items = []
            for cell, image in zip(cells, outcome.images):
                row = self._row(
                    cell, base, status=image.status, error=image.error, latency_ms=t.latency_ms,
                    encode_ms=t.encode_ms, denoise_ms=t.denoise_ms, decode_ms=t.decode_ms, step_ms=t.step_ms,
                    latency_samples=samples, recompiles=outcome.recompiles, upscale_ms=t.upscale_ms,
                    image_path=image_relpath(config.config_id, cell.prompt.prompt_id, cell.seed)
                    if image.status == "ok" else None,
                )
                items.append((row, image.pixels))
        self._put((call, items))
        self.observer.cells_advanced(config, len(cells))

    def config_ended(self, config: Config, status: str, reason: str, cells: tuple[CellTask, ...],
                     facts: dict) -> None:
        if cells:
            now = time.time()
            base = dict(config_id=config.config_id, batch_size=config.knobs.batch_size, created_at=now)
            self._put((None, [(self._row(c, base, status=status, error=reason), None) for c in cells]))
            self.observer.cells_advanced(config, len(cells), timed=False)
        self.flush()
        self.store.update_config(
            config.config_id, status=status, reason=reason,
            load_ms=facts.get("load_ms"), warmup_ms=facts.get("warmup_ms"), compile_ms=facts.get("compile_ms"),
            export_ms=facts.get("export_ms"),
            recompiles=facts.get("recompiles", 0),
            **({"applied": json.dumps(facts["applied"], sort_keys=True)} if facts.get("applied") else {}),
        )
        self.observer.config_ended(config, status, reason)

    def config_profiled(self, config: Config, trace: bytes, ops: list[ProfiledOp]) -> None:
        write_atomic(self.store.run_dir / profile_relpath(config.config_id), trace)
        self.store.put_profile_ops(config.config_id, ops)

    def group_ended(self, report: GroupReport) -> None:
        self.groups.append(report)

    # -- writing ---------------------------------------------------------------------------------
    @staticmethod
    def _row(cell: CellTask, base: dict, **fields) -> CellRow:
        return CellRow(prompt_id=cell.prompt.prompt_id, seed=cell.seed, prompt=cell.prompt.text,
                       category=cell.prompt.category, **base, **fields)

    def _put(self, items: tuple[CallRow | None, list]) -> None:
        self._raise_if_failed()
        if self._thread is None:
            self._write(items)
        else:
            self._queue.put(items)

    def _write(self, work: tuple[CallRow | None, list]) -> None:
        call, items = work
        rows = []
        for row, pixels in items:
            if pixels is not None:  # the image lands before its row commits
                sha = write_png_atomic(self.store.run_dir / row.image_path, pixels)
                row = CellRow(**{**row.__dict__, "image_sha256": sha})
            rows.append(row)
        self.store.put_cells(rows, call)

    def _write_loop(self) -> None:
        while True:
            items = self._queue.get()
            try:
                if items is None:
                    return
                if self._error is None:
                    self._write(items)
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
