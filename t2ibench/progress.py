"""Rich progress bars for a run: overall cells and the current config, with ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichObserver:
    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.console = console
        self._overall = None
        self._configs: dict[str, object] = {}  # config_id → its bar; several at once on a Ray cluster

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
        if n_cells:
            self._overall = self.progress.add_task("all cells", total=n_cells)

    def config_started(self, config, n_cells: int) -> None:
        self._configs[config.config_id] = self.progress.add_task(f"  {config.name[:40]}", total=n_cells)

    def cells_advanced(self, config, n: int) -> None:
        if config.config_id in self._configs:
            self.progress.advance(self._configs[config.config_id], n)
        if self._overall is not None:
            self.progress.advance(self._overall, n)

    def config_ended(self, config, status: str, reason: str) -> None:
        if status != "done":
            self.console.print(f"[yellow]{status}[/yellow] {config.name} ({config.config_id}): {reason}")
        if config.config_id in self._configs:
            self.progress.remove_task(self._configs.pop(config.config_id))
