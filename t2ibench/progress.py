"""Rich progress bars for a run: overall cells and the current config, with an ETA from measured cells,
then one bar per network that scoring runs over the images."""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text


class EtaEstimator:
    """Seconds left in a run: the cells left × the time per cell measured after warm-up, over the number of
    configs generating at once (several on a Ray cluster).

    A config's first advance comes after its load, configuration, warm-up and compile, so only the gaps
    between its later advances are measured; the time per cell is their exponentially weighted mean.
    Cells that end without a call (skipped) count as done but are not measured.
    """

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic, alpha: float = 0.3):
        self.total, self.clock, self.alpha = total, clock, alpha
        self.done = 0
        self.per_cell: float | None = None  # seconds, EWMA over measured gaps
        self._last: dict[str, float | None] = {}  # config_id → time of its last advance (None: none yet)

    def config_started(self, config_id: str) -> None:
        self._last[config_id] = None

    def config_ended(self, config_id: str) -> None:
        self._last.pop(config_id, None)

    def advanced(self, config_id: str, n: int, timed: bool = True) -> None:
        now = self.clock()
        self.done += n
        if not timed or n <= 0:
            return
        last = self._last.get(config_id)
        if last is not None:
            sample = (now - last) / n
            self.per_cell = sample if self.per_cell is None else self.alpha * sample + (1 - self.alpha) * self.per_cell
        self._last[config_id] = now

    def seconds_left(self, remaining: int | None = None) -> float | None:
        """For the run (or ``remaining`` cells of one config); None until a cell has been measured."""
        if self.per_cell is None:
            return None
        if remaining is not None:
            return remaining * self.per_cell
        return max(self.total - self.done, 0) * self.per_cell / max(1, len(self._last))


class EtaColumn(ProgressColumn):
    """``ETA 0:01:20`` from the task's ``eta_at`` field (a monotonic deadline), counting down between updates;
    ``ETA …`` while warming up."""

    def render(self, task) -> Text:
        if task.finished:
            return Text("ETA 0:00:00", style="progress.remaining")
        deadline = task.fields.get("eta_at")
        if deadline is None:
            return Text("ETA …", style="progress.remaining")
        left = max(0, int(round(deadline - time.monotonic())))
        return Text(f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}", style="progress.remaining")


class RichObserver:
    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic):
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), EtaColumn(), console=console, transient=False,
        )
        self.console = console
        self.clock = clock
        self.eta = EtaEstimator(0, clock)
        self._overall = None
        self._configs: dict[str, object] = {}  # config_id → its bar; several at once on a Ray cluster
        self._scoring: dict[str, object] = {}  # label → its bar

    def __enter__(self) -> "RichObserver":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.progress.tasks:  # nothing was shown (an error before the first cell): leave no blank line
            self.progress.live.transient = True
            self.progress.live.stop()  # Progress.stop would print an empty line on a non-interactive console
            return
        self.progress.stop()

    def run_started(self, n_cells: int) -> None:
        self.eta = EtaEstimator(n_cells, self.clock)
        if n_cells:
            self._overall = self.progress.add_task("all cells", total=n_cells, eta_at=None)

    def config_started(self, config, n_cells: int) -> None:
        self.eta.config_started(config.config_id)
        self._configs[config.config_id] = self.progress.add_task(f"  {config.name[:40]}", total=n_cells, eta_at=None)

    def cells_advanced(self, config, n: int, timed: bool = True) -> None:
        self.eta.advanced(config.config_id, n, timed)
        now = time.monotonic()
        task = self._configs.get(config.config_id)
        if task is not None:
            self.progress.advance(task, n)
            left = self.eta.seconds_left(self._remaining(task))
            self.progress.update(task, eta_at=None if left is None else now + left)
        if self._overall is not None:
            self.progress.advance(self._overall, n)
            left = self.eta.seconds_left()
            self.progress.update(self._overall, eta_at=None if left is None else now + left)

    def _task(self, task_id):
        return next(t for t in self.progress.tasks if t.id == task_id)

    def _remaining(self, task_id) -> int:
        task = self._task(task_id)
        return max(int((task.total or 0) - task.completed), 0)

    def config_ended(self, config, status: str, reason: str) -> None:
        self.eta.config_ended(config.config_id)
        if status != "done":
            self.console.print(f"[yellow]{status}[/yellow] {config.name} ({config.config_id}): {reason}")
        if config.config_id in self._configs:
            self.progress.remove_task(self._configs.pop(config.config_id))

    def scoring(self, label: str, done: int, added: int) -> None:
        """Scoring's own bar per network (the hook of :func:`t2ibench.metrics.evaluate.evaluate`): ``added``
        more images (or image pairs) to run for ``label``, ``done`` more run."""
        if label not in self._scoring:
            self._scoring[label] = self.progress.add_task(f"scoring {label}"[:42], total=0, eta_at=None)
        task_id = self._scoring[label]
        task = self._task(task_id)
        self.progress.update(task_id, total=(task.total or 0) + added, advance=done)
        task = self._task(task_id)
        if task.completed and task.elapsed:
            left = task.elapsed / task.completed * max((task.total or 0) - task.completed, 0)
            self.progress.update(task_id, eta_at=time.monotonic() + left)
