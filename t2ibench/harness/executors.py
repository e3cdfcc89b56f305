"""Executors run a plan's load groups: in this process (local) or, later, across GPUs (ray)."""

from __future__ import annotations

from typing import Callable, Protocol

from t2ibench.errors import UserError
from t2ibench.harness.backend import BACKENDS
from t2ibench.harness.plan import RunPlan
from t2ibench.harness.worker import ResultSink, Worker
from t2ibench.registry import Registry


class Executor(Protocol):
    def execute(self, plan: RunPlan, sink: ResultSink) -> None: ...


EXECUTORS: Registry[Callable[[], Executor]] = Registry("executor")


@EXECUTORS.register("local")
class LocalExecutor:
    """Runs every group in this process, one after another, on the plan's device."""

    def execute(self, plan: RunPlan, sink: ResultSink) -> None:
        """A user error in one group (a model that cannot be found) fails that group; the others
        still run, and the errors are raised together at the end."""
        worker = Worker(BACKENDS.get(plan.backend)(), plan.device, plan.timing,
                        trust_remote_code=plan.trust_remote_code)
        problems: list[str] = []
        for group in plan.groups:
            try:
                worker.run_group(group, sink)
            except UserError as e:
                problems.extend(e.problems)
        if problems:
            unique = list(dict.fromkeys(problems))
            raise UserError(unique[0], problems=unique)


@EXECUTORS.register("ray")
def _ray_executor() -> Executor:
    raise UserError("executor 'ray' is not available in this t2ibench version yet; use --executor local")
