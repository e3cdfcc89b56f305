"""Preflight: everything about a loaded suite that can be told without generating an image.

Shared by ``t2ibench validate`` and the start of ``t2ibench run`` (before any model loads):

- each config's backend preflight (:meth:`~t2ibench.backends.BackendSpec.check_config`): LoRA files,
  ``base:``, missing packages, and the combinations that the engine always skips, with its reason;
- each config's ``upscale`` model file or folder (every backend);
- each load scenario's needs: the ``[serve]`` extra, a trace file that exists;
- each metric's networks (an open_clip architecture, FID features, an LPIPS net: did-you-mean) and,
  when ``find_weights``, their weights; its ``against`` folder or ``.npz``;
- too few images per config for a metric (its ``min_images``).

Every finding is rendered ``file:line: key.path: message`` at the line of the suite file that sets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError

from t2ibench.errors import UserError
from t2ibench.suites.knobs import Knobs
from t2ibench.suites.schema import Config, Suite

_SECTIONS = ("include", "reference", "matrix", "defaults")  # most specific first


@dataclass
class Preflight:
    """What the preflight found: ``errors`` (the run would fail), ``skips`` (configs always skipped, with why),
    ``few_images`` (a metric given fewer images than it needs: an error in validate, a warning in run)."""

    errors: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)
    few_images: list[str] = field(default_factory=list)


def _same(knob: str, raw: Any, value: Any, backend: str) -> bool:
    try:
        return Knobs.model_validate({"backend": backend, knob: raw}).knob(knob) == value
    except (ValidationError, ValueError, TypeError):
        return False


def knob_loc(data: Any, config: Config, knob: str) -> tuple:
    """The key path in the suite's data that gives ``config`` its value of ``knob`` (the most specific
    section setting that value; the first setting of the knob, else the top-level model)."""
    if not isinstance(data, dict):
        return ()
    value = config.model if knob == "model" else config.knobs.knob(knob)
    candidates: list[tuple[tuple, Any]] = []
    for section in _SECTIONS:
        node = data.get(section)
        if section == "include" and isinstance(node, list):
            named = [i for i, e in enumerate(node) if isinstance(e, dict) and e.get("name") == config.name]
            order = named + [i for i in range(len(node)) if i not in named]
            candidates += [(("include", i, knob), node[i][knob]) for i in order
                           if isinstance(node[i], dict) and knob in node[i]]
        elif section == "matrix" and isinstance(node, dict) and isinstance(node.get(knob), list):
            candidates += [(("matrix", knob, i), v) for i, v in enumerate(node[knob])]
        elif isinstance(node, dict) and knob in node and (section != "reference" or config.is_reference):
            candidates.append(((section, knob), node[knob]))
    if knob == "model" and "model" in data:
        candidates.append((("model",), data["model"]))
    for loc, raw in candidates:
        if _same(knob, raw, value, config.knobs.backend):
            return loc
    return candidates[0][0] if candidates else (("model",) if knob == "model" else ())


def _names(configs: list[Config]) -> str:
    names = [f"'{c.name}'" for c in configs]
    if len(names) == 1:
        return f"config {names[0]}"
    shown = ", ".join(names[:3])
    return f"configs {shown}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _backend_findings(suite: Suite, data: Any, render, device: Optional[str], out: Preflight) -> None:
    from t2ibench.backends import BACKENDS

    grouped: dict[tuple, list[Config]] = {}
    for config in suite.configs():
        for f in BACKENDS.get(config.knobs.backend).check_config(config.model, config.knobs, device):
            loc = knob_loc(data, config, f.knob)
            grouped.setdefault((f.level, loc + f.path if loc else loc, f.message), []).append(config)
    for (level, loc, message), configs in grouped.items():
        if level == "error":
            out.errors.append(render(loc, message))
        else:
            out.skips.append(render(loc, f"{_names(configs)} will be skipped: {message}"))


def _upscale_findings(suite: Suite, data: Any, render, out: Preflight) -> None:
    from t2ibench.backends.upscale import check_options

    seen: set[tuple] = set()
    for config in suite.configs():
        problem = check_options(config.knobs.upscale) if config.knobs.upscale is not None else None
        loc = knob_loc(data, config, "upscale")
        if problem and (loc, problem) not in seen:
            seen.add((loc, problem))
            out.errors.append(render(loc + ("model",) if loc else loc, problem))


def _scenario_findings(suite: Suite, data: Any, render, out: Preflight) -> None:
    """A load scenario needs the [serve] extra (once), and a trace scenario its file."""
    import importlib.util

    from t2ibench.suites.scenario import Trace, is_load

    seen: set[tuple] = set()
    for config in suite.configs():
        scenario = config.knobs.scenario
        if not is_load(scenario):
            continue
        loc = knob_loc(data, config, "scenario")
        missing = [m for m in ("fastapi", "uvicorn", "aiohttp", "prometheus_client") if importlib.util.find_spec(m) is None]
        problems = [f"load scenarios need {', '.join(missing)}: pip install 't2ibench[serve]'"] if missing else []
        if isinstance(scenario, Trace) and not suite.resolve_path(scenario.path).is_file():
            problems.append(f"trace file '{_shown(suite.resolve_path(scenario.path))}' does not exist (a relative "
                            "path resolves against the suite's folder)")
        for problem in problems:
            key = (loc, problem) if "trace" in problem else ((), problem)
            if key not in seen:
                seen.add(key)
                out.errors.append(render(loc, problem))


def _metric_loc(data: Any, name: str, option: str = "") -> tuple:
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if isinstance(metrics, list):
        return ("metrics", metrics.index(name)) if name in metrics else ("metrics",)
    if isinstance(metrics, dict) and isinstance(metrics.get(name), dict) and option in metrics[name]:
        return ("metrics", name, option)
    return ("metrics", name)


def _metric_findings(suite: Suite, data: Any, render, find_weights: bool, out: Preflight) -> None:
    from t2ibench.metrics.registry import METRICS

    n_prompts, n_seeds = len(suite.prompt_list()), len(suite.seed_list())
    per_config = n_prompts * n_seeds
    for name, options in suite.metrics.items():
        spec = METRICS.get(name)
        if per_config < spec.min_images:
            out.few_images.append(render(_metric_loc(data, name), (
                f"{name} needs at least {spec.min_images} images per config, and this suite gives {per_config} "
                f"({n_prompts} prompt{'s' * (n_prompts != 1)} × {n_seeds} seed{'s' * (n_seeds != 1)}); "
                "add prompts or seeds")))
        against = getattr(options, "against", "reference")
        if spec.against and against != "reference":
            path = suite.resolve_path(against)
            npz = against.lower().endswith(".npz")
            if not (path.is_file() if npz else path.is_dir()):
                what = "statistics file" if npz else "folder"
                why = "is not a file" if npz and path.exists() else "is not a folder" if path.exists() else \
                    "does not exist"
                out.errors.append(render(_metric_loc(data, name, "against"),
                                         f"{what} '{_shown(path)}' {why} (a relative path resolves against the "
                                         "suite's folder)"))
        for check in spec.networks(options):
            try:
                check.check()
                if find_weights:
                    check.find()
            except UserError as e:
                out.errors.extend(render(_metric_loc(data, name, check.option), p) for p in e.problems)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def preflight(suite: Suite, *, device: Optional[str] = None, metrics: bool = True,
              find_weights: bool = False) -> Preflight:
    """What the suite's configs and metrics will meet, told without loading a model or generating an image.

    ``device``: the run's device, or None in ``validate`` (then only what holds on any device is checked).
    ``find_weights``: look up each metric network's weights too (this may download them unless offline).
    """
    from t2ibench.suites.loader import line_of, suite_lines
    from t2ibench.suites.problems import Problem

    data, lines, file = suite_lines(suite)
    def render(loc: tuple, message: str) -> str:
        return Problem(loc, message).render(file, line_of(loc, lines) if file else None)

    out = Preflight()
    _backend_findings(suite, data, render, device, out)
    _upscale_findings(suite, data, render, out)
    _scenario_findings(suite, data, render, out)
    if metrics and suite.metrics:
        _metric_findings(suite, data, render, find_weights, out)
    return out
