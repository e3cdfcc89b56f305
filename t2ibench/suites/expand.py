"""Matrix expansion: defaults × matrix − exclude + include + reference → configs.

* The matrix is a cartesian product in key order, values in listed order; a config made from
  it is named by its matrix keys only (``steps=10 scheduler=euler``). No matrix → one config
  named ``default`` (the defaults alone; :func:`default_config_note` says so when ``include``
  adds others, since the user may not expect it).
* An ``exclude`` entry drops every combination whose resolved knobs equal all its keys.
* ``include`` entries are defaults + their keys, named by their required, unique ``name``.
* ``reference`` is defaults + its keys, named ``reference`` with ``is_reference=True``.
* Configs with the same config_id are merged: the first keeps its place; if a later one is
  named by the user (include/reference) and the first is not, the kept config takes the
  user's name (and the reference flag). Two user-named configs with the same knobs are an error.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Optional

from pydantic import ValidationError

from t2ibench.suites.knobs import Knobs
from t2ibench.suites.problems import Problem, from_validation_error, keypath
from t2ibench.suites.scenario import expand_levels, label
from t2ibench.suites.schema import Config

MAX_COMBINATIONS = 10_000
RESERVED_NAMES = ("reference",)


def format_value(value: Any) -> str:
    """A knob value as a config name shows it: ``null`` (a knob left off) reads ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict) and "kind" in value:  # a scenario: server rate=2
        return label(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def resolve_knobs(model: str, values: dict) -> Knobs:
    """Validated knobs with the model filled in."""
    knobs = Knobs.model_validate(values)
    return knobs if knobs.model else knobs.replace(model=model)


def _matches(entry_knobs: Knobs, keys: list[str], knobs: Knobs) -> bool:
    return all(entry_knobs.knob(k) == knobs.knob(k) for k in keys)


def empty_matrix_problems(matrix: dict) -> list[Problem]:
    return [Problem(("matrix", key), "empty list; give at least one value")
            for key, values in matrix.items() if isinstance(values, list) and not values]


def include_name_problems(includes: list) -> tuple[list[Problem], set[int]]:
    """Problems with include names, and the indexes of entries with a good, unique name."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for i, entry in enumerate(includes):
        if not isinstance(entry, dict):
            continue
        loc = ("include", i)
        name = entry.get("name")
        if name is None:
            problems.append(Problem(loc, "missing 'name'; every include entry needs a unique name"))
        elif not isinstance(name, str) or not name.strip():
            problems.append(Problem(loc + ("name",), f"must be a non-empty string (got {name!r})"))
        elif name in RESERVED_NAMES:
            problems.append(Problem(loc + ("name",), f"'{name}' is reserved; use the 'reference' key"))
        elif name in first:
            problems.append(Problem(loc + ("name",), f"duplicate include name '{name}' "
                                                     f"(also include[{first[name]}])"))
        else:
            first[name] = i
    return problems, set(first.values())


def expand(data: dict) -> tuple[list[Config], list[Problem]]:
    """Expand a structurally valid suite (plain data, knobs already checked)."""
    model: str = data["model"]
    defaults: dict = dict(data.get("defaults") or {})
    matrix: dict = dict(data.get("matrix") or {})
    problems: list[Problem] = []

    keys = list(matrix)
    problems += empty_matrix_problems(matrix)
    if problems:
        return [], problems
    total = 1
    for key in keys:
        total *= len(matrix[key])
    if total > MAX_COMBINATIONS:
        return [], [Problem(("matrix",), f"{total} combinations; at most {MAX_COMBINATIONS} are allowed")]

    excludes: list[tuple[Knobs, list[str]]] = []
    for i, entry in enumerate(data.get("exclude") or []):
        try:
            excludes.append((resolve_knobs(model, {**defaults, **entry}), list(entry)))
        except ValidationError as e:
            problems += from_validation_error(e, entry, prefix=("exclude", i))

    configs: list[Config] = []
    seen: dict[str, tuple[int, Optional[tuple]]] = {}  # config_id -> (index, loc if user-named)

    def add(config: Config, loc: Optional[tuple]) -> None:
        if config.config_id not in seen:
            seen[config.config_id] = (len(configs), loc)
            configs.append(config)
            return
        index, first_loc = seen[config.config_id]
        if loc is None:
            return
        if first_loc is not None:
            problems.append(Problem(loc, f"same model and knobs as '{configs[index].name}' "
                                         f"({keypath(first_loc)}); named configs must differ"))
            return
        first = configs[index]  # same id: the knobs differ at most in measurement knobs, which the named keeps
        configs[index] = first.model_copy(update={"name": config.name, "knobs": config.knobs,
                                                   "is_reference": config.is_reference})
        seen[config.config_id] = (index, loc)

    bad_combinations = 0
    for combo in itertools.product(*(matrix[k] for k in keys)):
        for merged, level in expand_levels({**defaults, **dict(zip(keys, combo))}):  # one config per load level
            values = {k: merged[k] for k in keys}
            try:
                knobs = resolve_knobs(model, merged)
            except ValidationError as e:
                bad_combinations += 1
                if bad_combinations <= 3:
                    what = " ".join(f"{k}={format_value(v)}" for k, v in values.items())
                    detail = "; ".join(p.render() for p in from_validation_error(e, merged))
                    problems.append(Problem(("matrix",), f"invalid combination {what}: {detail}"))
                continue
            if any(_matches(ek, ekeys, knobs) for ek, ekeys in excludes):
                continue
            name = " ".join(f"{k}={format_value(v)}" for k, v in values.items()) or "default"
            if level and "scenario" not in values:  # the level comes from the defaults
                name = level if name == "default" else f"{name} {level}"
            add(Config(name=name, model=knobs.model, knobs=knobs), None)
    if not configs and keys and not problems:
        if not data.get("include"):
            problems.append(Problem(("exclude",), "excludes every matrix combination; nothing to run"))

    name_problems, named = include_name_problems(data.get("include") or [])
    problems += name_problems
    names: dict[str, tuple] = {}
    for i, entry in enumerate(data.get("include") or []):
        loc = ("include", i)
        if i not in named:
            continue
        values = {k: v for k, v in entry.items() if k != "name"}
        for merged, level in expand_levels({**defaults, **values}):
            name = f"{entry['name']} {level}" if level else entry["name"]
            names[name] = loc + ("name",)
            try:
                knobs = resolve_knobs(model, merged)
            except ValidationError as e:
                problems += from_validation_error(e, values, prefix=loc)
                break
            add(Config(name=name, model=knobs.model, knobs=knobs), loc)

    reference = data.get("reference")
    if reference is not None:
        merged = {**defaults, **reference}
        levels = expand_levels(merged)
        if len(levels) > 1:
            problems.append(Problem(("reference",), "the reference is one config: give its scenario one level "
                                                    "(one rate, concurrency and slo_ms)"))
            merged = levels[0][0]
        try:
            knobs = resolve_knobs(model, merged)
            add(Config(name="reference", model=knobs.model, knobs=knobs, is_reference=True), ("reference",))
        except ValidationError as e:
            problems += from_validation_error(e, reference, prefix=("reference",))

    for name, loc in names.items():
        clash = [c for c in configs if c.name == name]
        if len(clash) > 1:
            problems.append(Problem(loc, f"'{name}' is also the name of a matrix config; choose another"))
    return configs, problems


def default_config_note(data: dict, configs: list[Config]) -> Optional[str]:
    """A note when ``include:`` without ``matrix:`` also runs the defaults alone as config ``default``,
    with the ``exclude`` entry that drops it; None otherwise."""
    default = next((c for c in configs if c.name == "default"), None)
    if default is None or data.get("matrix") or not data.get("include"):
        return None
    defaults = data.get("defaults") or {}
    key = next((k for k, v in defaults.items() if isinstance(v, (int, float, bool)) and k != "model"), "steps")
    entry = f"{{{key}: {format_value(default.knobs.knob(key))}}}"
    return (f"config 'default' runs the defaults alone (a suite with include: but no matrix: keeps it); "
            f"if not wanted, add exclude: [{entry}]")
