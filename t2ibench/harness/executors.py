"""Executor implementations (declared in :mod:`t2ibench.executors`): they run a plan's load groups.

The local one is here; the Ray one is :mod:`t2ibench.harness.ray_executor`.
"""

from __future__ import annotations

from typing import Protocol

from t2ibench.errors import UserError
from t2ibench.executors import LocalOptions
from t2ibench.harness.plan import RunPlan
from t2ibench.harness.worker import ResultSink, Worker


class Executor(Protocol):
    def execute(self, plan: RunPlan, sink: ResultSink) -> None: ...


class LocalExecutor:
    """Runs every group in this process, one after another, on the plan's first device."""

    def __init__(self, options: LocalOptions | None = None):
        self.options = options or LocalOptions()

    def execute(self, plan: RunPlan, sink: ResultSink) -> None:
        """A user error in one group (a model that cannot be found) fails that group; the others
        still run, and the errors are raised together at the end."""
        worker = Worker(plan.devices[0], plan.timing, trust_remote_code=plan.trust_remote_code, base_dir=plan.base_dir)
        problems: list[str] = []
        for group in plan.groups:
            try:
                worker.run_group(group, sink)
            except UserError as e:
                problems.extend(e.problems)
        if problems:
            unique = list(dict.fromkeys(problems))
            raise UserError(unique[0], problems=unique)
