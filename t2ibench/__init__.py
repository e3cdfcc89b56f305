"""t2ibench: benchmark text-to-image diffusion pipelines for speed and quality.

Public API (heavy modules import lazily)::

    suite = t2ibench.load_suite("smoke")          # a path or a builtin name
    run = t2ibench.run(suite, out="runs/x", device="cpu")
    run.results(); run.cells()                     # pandas DataFrames
    t2ibench.open_run("runs/x")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_suite", "run", "open_run", "metrics", "__version__"]


def __getattr__(name: str):
    if name == "load_suite":
        from t2ibench.suites import load_suite

        return load_suite
    if name == "run":
        from t2ibench.orchestration import run

        return run
    if name == "open_run":
        from t2ibench.orchestration import open_run

        return open_run
    if name == "metrics":
        import importlib

        return importlib.import_module("t2ibench.metrics")
    raise AttributeError(f"module 't2ibench' has no attribute {name!r}")
