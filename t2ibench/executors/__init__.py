"""Executor declarations: how a plan's load groups are distributed (in this process, or across GPUs).

Each executor registers an :class:`ExecutorSpec`: its options model (from the suite's
``executor: {name: ..., ...}`` or the CLI's ``--executor-opt key=value``) and the
``"module:attribute"`` of its implementation, imported only when a run uses it. Adding an
executor is one implementation module plus one registration here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import Field, ValidationError, model_serializer, model_validator

from t2ibench.base import Frozen
from t2ibench.errors import UserError
from t2ibench.registry import Registry, did_you_mean


class LocalOptions(Frozen):
    """``executor: {name: local}``: every group in this process, one after another, on the run's device."""


class RayOptions(Frozen):
    """``executor: {name: ray, address: auto, cpus_per_actor: 2, max_actors: 8}``."""

    address: Optional[str] = None  # None: $RAY_ADDRESS, else a new local instance; auto or ray://host:port: join
    cpus_per_actor: int = Field(1, ge=1)  # CPUs per actor on a CPU-only cluster (its torch threads)
    max_actors: Optional[int] = Field(None, ge=1)  # default: the cluster's GPUs (else CPUs // cpus_per_actor)
    share_gpus: bool = False  # two actors on one GPU: latency is then not single-tenant


@dataclass(frozen=True)
class ExecutorSpec:
    name: str
    options: type[Frozen]
    implementation: str  # "module:attr" of a factory taking the options
    summary: str = ""

    def make(self, options: Frozen):
        module, _, attr = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attr)(options)


EXECUTORS: Registry[ExecutorSpec] = Registry("executor")
EXECUTORS.add("local", ExecutorSpec("local", LocalOptions, "t2ibench.harness.executors:LocalExecutor",
                                    "this process, groups one after another"))
EXECUTORS.add("ray", ExecutorSpec("ray", RayOptions, "t2ibench.harness.ray_executor:RayExecutor",
                                  "Ray actors, one per GPU (or cpus_per_actor CPUs); the driver writes the store"))


class ExecutorChoice(Frozen):
    """The executor a run uses and its parsed options; written flat, ``{name: ray, address: auto}``,
    or as a bare name."""

    name: str = "local"
    options: Frozen = Field(default_factory=LocalOptions)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict) or isinstance(data.get("options"), Frozen):
            return data
        data = dict(data)
        name = data.pop("name", "local")
        if not isinstance(name, str) or name not in EXECUTORS:
            raise ValueError(f"unknown executor '{name}'{did_you_mean(str(name), EXECUTORS.names())}; "
                             f"choose one of: {', '.join(EXECUTORS.names())}")
        model = EXECUTORS.get(name).options
        problems = option_problems(name, data)
        if problems:
            raise ValueError("; ".join(f"option '{key}': {msg}" for key, msg in problems))
        return {"name": name, "options": model.model_validate(data)}

    @model_serializer
    def _dump(self) -> dict:
        return {"name": self.name, **self.options.model_dump(mode="json")}

    def make(self):
        return EXECUTORS.get(self.name).make(self.options)


def parse_executor(name: str, options: dict[str, Any]) -> ExecutorChoice:
    """Validate an executor name and its options (a UserError names each bad option)."""
    if name not in EXECUTORS:
        raise UserError(f"unknown executor '{name}'{did_you_mean(name, EXECUTORS.names())}; "
                        f"choose one of: {', '.join(EXECUTORS.names())}")
    problems = option_problems(name, options)
    if problems:
        lines = [f"executor {name}: option '{key}': {msg}" for key, msg in problems]
        raise UserError(lines[0], problems=lines)
    return ExecutorChoice(name=name, options=EXECUTORS.get(name).options.model_validate(options))


def option_problems(name: str, options: Any) -> list[tuple[str, str]]:
    """``(option, message)`` for every bad option of executor ``name``: unknown ones with a did-you-mean
    (or the executor that has such an option), bad values with what was expected."""
    model = EXECUTORS.get(name).options
    if not isinstance(options, dict):
        return [("?", f"expected a mapping of options (got {options!r})")]
    fields = list(model.model_fields)
    problems: list[tuple[str, str]] = []
    for key in options:
        if key in fields:
            continue
        hint = did_you_mean(str(key), fields)
        if not hint:
            owners = [other for other, spec in EXECUTORS.items() if key in spec.options.model_fields]
            close = [(other, f) for other, spec in EXECUTORS.items() if other != name
                     for f in [did_you_mean(str(key), list(spec.options.model_fields))] if f]
            if owners:
                hint = f"; it is an option of executor '{owners[0]}' (choose it with name: {owners[0]} " \
                       f"or --executor {owners[0]})"
            elif close:
                hint = f"{close[0][1][:-2]} of executor '{close[0][0]}'?)"
            else:
                hint = f"; options of '{name}': {', '.join(fields) or 'none'}"
        problems.append((str(key), f"unknown option{hint}"))
    try:
        model.model_validate({k: v for k, v in options.items() if k in fields})
    except ValidationError as e:
        for err in e.errors():
            key = ".".join(map(str, err["loc"])) or "?"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append((key, f"{msg[:1].lower()}{msg[1:]} (got {err['input']!r})"))
    return problems


def parse_cli_options(pairs: list[str]) -> dict[str, str]:
    """``["address=auto", "max_actors=8"]`` → a dict (values are coerced by the options model)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--executor-opt '{pair}': expected KEY=VALUE, e.g. address=auto")
        out[key.strip()] = value.strip()
    return out
