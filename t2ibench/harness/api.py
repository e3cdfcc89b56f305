"""The Python API: ``t2ibench.run`` and ``t2ibench.open_run``."""

from __future__ import annotations

from pathlib import Path

from t2ibench.harness.store import RunStore


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


def run(suite, out: str | Path | None = None, device: str = "auto", *, executor: str = "local",
        fresh: bool = False, metrics: bool = True) -> Run:
    """Run a suite (a Suite, a path or a builtin name) and return its Run."""
    from t2ibench.harness.runs import execute
    from t2ibench.suites import Suite, load_suite

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    return execute(suite, out=out, device=device, executor=executor, fresh=fresh, metrics=metrics)


def open_run(run_dir: str | Path) -> Run:
    return Run(run_dir)
