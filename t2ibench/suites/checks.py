"""Semantic checks of a suite beyond its structure: knobs, expansion, metrics, objectives, prompts.

:func:`semantic_problems` works on plain data (as loaded from YAML, or ``Suite.raw()``) and
collects every problem it can find, with key paths; it skips the top-level keys named in
``skip`` (those already failed structural validation).

Not checked here, by design: the existence of a metric's ``against:`` folder or ``.npz``, LoRA files,
metric networks and whether a model or its weights can be found; those need a loaded suite with its
paths resolved, and are the preflight's (:mod:`t2ibench.suites.preflight`), run by ``validate`` and at
the start of ``run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from pydantic import BaseModel, ValidationError

from t2ibench.registry import did_you_mean
from t2ibench.backends import BACKENDS
from t2ibench.suites.knobs import KNOB_NAMES, Knobs, knob_owner
from t2ibench.suites.problems import Problem, from_validation_error

MEASURES: tuple[str, ...] = (
    "latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s",
    "peak_vram_mb", "peak_rss_mb", "n_ok", "n_failed",
    # load scenarios (a single-stream row leaves them unmeasured)
    "offered_rate", "achieved_rate", "latency_ms_p90", "latency_ms_p99", "latency_ms_max", "queue_ms_mean",
    "compute_ms_mean", "slo_attainment", "goodput", "error_rate", "rejected", "mean_batch", "slo_max_rate",
)
"""Results columns that objectives, constraints and gates may name besides metrics."""

_GATE = re.compile(r"^\s*\d+(\.\d+)?\s*%\s*$")
_KNOB_FIELDS = ("defaults", "matrix", "exclude", "include", "reference", "model")


def knob_value_problems(key: str, value: Any, loc: tuple) -> list[Problem]:
    """Problems of one knob value, at ``loc`` (the loc of the value itself)."""
    if key == "scenario":  # lists of rates, concurrencies or SLOs: each level is checked
        from t2ibench.suites.scenario import expand_levels

        levels = expand_levels({"scenario": value})
        if len(levels) > 1:
            return list(dict.fromkeys(p for level, _ in levels for p in knob_value_problems(key, level[key], loc)))
    if key == "endpoint" and value == "self":  # a local backend's config served by t2ibench itself
        return []
    owner = knob_owner(key)  # an engine knob is checked by its backend's options model
    model = Knobs if owner is None else BACKENDS.get(owner).options
    try:
        model.model_validate({key: value})
    except ValidationError as e:
        if key == "compile" and not isinstance(value, dict):
            return [Problem(loc, f"expected true, false or {{mode: ..., fullgraph: ...}} (got {value!r})")]
        problems = from_validation_error(e, {key: value}, model=model)
        if key == "compile":  # a mapping: report the CompileOptions errors, not "not a boolean"
            problems = [p for p in problems if len(p.loc) > 1] or problems
        if key == "scenario":  # the discriminated union's tag (``server``) is not a key the user wrote
            from t2ibench.suites.scenario import KINDS

            problems = [Problem(p.loc[:1] + p.loc[2:] if p.loc[1:2] and p.loc[1] in KINDS else p.loc, p.msg)
                        for p in problems]
        return [Problem(loc + p.loc[1:], p.msg) for p in problems]
    return []


def unknown_knob(key: Any, loc: tuple) -> Problem:
    hint = did_you_mean(str(key), KNOB_NAMES) or "; knobs: " + ", ".join(KNOB_NAMES)
    return Problem(loc, f"unknown knob '{key}'{hint}")


def knob_mapping_problems(mapping: dict, loc: tuple, allow: Iterable[str] = ()) -> list[Problem]:
    problems: list[Problem] = []
    for key, value in mapping.items():
        if key in allow:
            continue
        if key not in KNOB_NAMES:
            problems.append(unknown_knob(key, loc + (key,)))
        else:
            problems += knob_value_problems(key, value, loc + (key,))
    return problems


def _knob_problems(data: dict, skip: set) -> list[Problem]:
    problems: list[Problem] = []
    defaults = data.get("defaults")
    if "defaults" not in skip and isinstance(defaults, dict):
        problems += knob_mapping_problems(defaults, ("defaults",))
    matrix = data.get("matrix")
    if "matrix" not in skip and isinstance(matrix, dict):
        for key, values in matrix.items():
            if key not in KNOB_NAMES:
                problems.append(unknown_knob(key, ("matrix", key)))
            elif isinstance(values, list):
                for i, value in enumerate(values):
                    problems += knob_value_problems(key, value, ("matrix", key, i))
    for field in ("exclude", "include"):
        entries = data.get(field)
        if field in skip or not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            if field == "exclude" and not entry:
                problems.append(Problem((field, i), "empty entry would exclude everything"))
            problems += knob_mapping_problems(entry, (field, i), allow=("name",) if field == "include" else ())
    reference = data.get("reference")
    if "reference" not in skip and isinstance(reference, dict):
        problems += knob_mapping_problems(reference, ("reference",))
    return problems


def metric_problems(metrics: Any) -> tuple[list[Problem], dict[str, BaseModel]]:
    """Problems in a ``metrics:`` section (a list of names, or name → options) and the options models
    of the valid entries, each parsed by its metric's registered options model."""
    from t2ibench.metrics.registry import METRICS

    problems: list[Problem] = []
    parsed_options: dict[str, BaseModel] = {}
    names: set[str] = set()
    entries: list[tuple[tuple, Any, Any]] = []  # (loc, name, options)
    if isinstance(metrics, list):
        for i, name in enumerate(metrics):
            if not isinstance(name, str):
                problems.append(Problem(("metrics", i), f"expected a metric name (got {name!r})"))
            elif name in names:
                problems.append(Problem(("metrics", i), f"'{name}' is listed twice"))
            else:
                entries.append((("metrics", i), name, {}))
    elif isinstance(metrics, dict):
        entries = [(("metrics", name), name, opts) for name, opts in metrics.items()]
    elif metrics is not None:
        problems.append(Problem(("metrics",), f"expected a list of metric names or a mapping of metric "
                                              f"options (got {type(metrics).__name__})"))
    for loc, name, opts in entries:
        if not isinstance(name, str) or name not in METRICS:
            hint = did_you_mean(str(name), METRICS.names()) or "; metrics: " + ", ".join(METRICS.names())
            problems.append(Problem(loc, f"unknown metric '{name}'{hint}"))
            continue
        names.add(name)
        if isinstance(opts, BaseModel):
            opts = opts.model_dump()
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            problems.append(Problem(loc, f"expected a mapping of options (got {opts!r})"))
            continue
        model = METRICS.get(name).options
        try:
            parsed_options[name] = model.model_validate(opts)
        except ValidationError as e:
            problems += from_validation_error(e, opts, prefix=loc,
                                              allowed_keys_at=lambda l, m=model: list(m.model_fields) if not l else None)
    return problems, parsed_options


def _metric_problems(data: dict) -> tuple[list[Problem], set[str]]:
    """Problems in ``metrics`` (with the reference they need) and the set of valid metric names."""
    from t2ibench.metrics.registry import METRICS

    metrics = data.get("metrics")
    problems, parsed = metric_problems(metrics)
    for name, options in parsed.items():
        if getattr(options, "against", None) == "reference" and data.get("reference") is None:
            loc = ("metrics", list(metrics).index(name)) if isinstance(metrics, list) else ("metrics", name)
            given = metrics.get(name) if isinstance(metrics, dict) else None
            where = loc + ("against",) if isinstance(given, dict) and "against" in given else loc
            problems.append(Problem(where, "compares against the reference config, but the suite has no "
                                           "'reference'; add one, or set 'against' to a folder"
                                           + (" or .npz" if METRICS.get(name).stats_files else "")))
    return problems, set(parsed)


def _column_problems(data: dict, skip: set, metric_names: set[str]) -> list[Problem]:
    from t2ibench.metrics.registry import columns, metric_of_column

    metric_columns = list(columns())
    columns = [*MEASURES, *metric_columns]
    problems: list[Problem] = []
    for field in ("objectives", "constraints", "gates"):
        section = data.get(field)
        if field in skip or not isinstance(section, dict):
            continue
        for key, value in section.items():
            loc = (field, key)
            if key in MEASURES:
                pass
            elif key in metric_columns:
                needed = metric_of_column(key)
                if needed not in metric_names and "metrics" not in skip:
                    problems.append(Problem(loc, f"metric '{needed}' is not computed by this suite; "
                                                 "add it under 'metrics'"))
            else:
                hint = did_you_mean(str(key), columns) or "; choose one of: " + ", ".join(columns)
                problems.append(Problem(loc, f"unknown column '{key}'{hint}"))
            if field == "gates":
                if isinstance(value, str) and not _GATE.match(value):
                    problems.append(Problem(loc, f"expected a relative tolerance like '5%' or an absolute "
                                                 f"number (got {value!r})"))
                elif isinstance(value, (int, float)) and value < 0:
                    problems.append(Problem(loc, f"must be >= 0 (got {value})"))
    return problems


def _seed_problems(data: dict) -> list[Problem]:
    seeds = data.get("seeds")
    problems = []
    if isinstance(seeds, list):
        first: dict = {}
        for i, s in enumerate(seeds):
            if s in first:
                problems.append(Problem(("seeds", i), f"duplicate seed {s} (also seeds[{first[s]}])"))
            first.setdefault(s, i)
    return problems


def _prompt_problems(data: dict, base_dir: Optional[Path]) -> tuple[list[Problem], Optional[list]]:
    from t2ibench.suites.prompts import PromptSource, PromptSourceError, resolve_prompts

    prompts = data.get("prompts")
    if isinstance(prompts, dict):
        prompts = PromptSource.model_validate(prompts)
    try:
        return [], resolve_prompts(prompts, base_dir)
    except PromptSourceError as e:
        return e.problems, None


@dataclass
class Checked:
    """What the semantic checks found: the problems, and the configs and prompts they built on the way
    (kept by the loader, so a suite is expanded and its prompt file read once)."""

    problems: list[Problem]
    configs: Optional[list] = None
    prompts: Optional[list] = None


def semantic_problems(data: dict, base_dir: Optional[Path] = None, skip: Iterable[str] = ()) -> list[Problem]:
    """Every problem beyond structure; ``skip`` names top-level keys that already failed."""
    return check_suite(data, base_dir, skip).problems


def check_suite(data: dict, base_dir: Optional[Path] = None, skip: Iterable[str] = ()) -> Checked:
    """The semantic checks, keeping the configs and prompts they built."""
    from t2ibench.suites.expand import empty_matrix_problems, include_name_problems

    configs = prompt_list = None
    skip = set(skip)
    problems = _knob_problems(data, skip)
    knobs_ok = not problems
    if "matrix" not in skip and isinstance(data.get("matrix"), dict):
        problems += empty_matrix_problems(data["matrix"])
    if "include" not in skip and isinstance(data.get("include"), list):
        problems += include_name_problems(data["include"])[0]
    if knobs_ok and not skip.intersection(_KNOB_FIELDS) and isinstance(data.get("model"), str):
        from t2ibench.suites.expand import expand

        configs, expand_problems = expand(data)
        problems += expand_problems
    metric_problems, metric_names = ([], set()) if "metrics" in skip else _metric_problems(data)
    problems += metric_problems
    problems += _column_problems(data, skip, metric_names)
    if "seeds" not in skip:
        problems += _seed_problems(data)
    if "prompts" not in skip and "prompts" in data:
        prompt_problems, prompt_list = _prompt_problems(data, base_dir)
        problems += prompt_problems
    return Checked(list(dict.fromkeys(problems)), configs, prompt_list)
