"""Load a suite from YAML (a path or a builtin name), reporting every problem with file and line.

Errors look like ``suites/x.yaml:12: matrix.scheduler[1]: unknown value 'eulr' (did you mean
'euler'?)``: one :class:`~t2ibench.suites.problems.SuiteError` (a ``UserError``) carries all
of them, one per line, in file order.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import ValidationError

from t2ibench.errors import UserError
from t2ibench.registry import did_you_mean
from t2ibench.suites.checks import check_suite
from t2ibench.suites.problems import Problem, SuiteError, from_validation_error
from t2ibench.suites.prompts import PromptSource
from t2ibench.suites.schema import Bound, SeedRange, Suite, Timing

__all__ = ["load_suite", "builtin_suites", "parse_yaml", "suite_from_data"]

Lines = dict[tuple, int]


def builtin_suites() -> dict[str, Path]:
    """Builtin suite name → path of its YAML, sorted by name."""
    folder = resources.files("t2ibench.suites").joinpath("builtin")
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            found[entry.name[: -len(".yaml")]] = Path(str(entry))
    return dict(sorted(found.items()))


# --- YAML with line numbers ----------------------------------------------------------------

def _walk(node: yaml.Node, path: tuple, lines: Lines, problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _walk(value_node, path, lines, problems)
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(path + (key,), f"duplicate key '{key}' (first at line {seen[key]})",
                                        line=line))
                continue
            seen[key] = line
            lines.setdefault(path + (key,), line)
            _walk(value_node, path + (key,), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault(path + (i,), item.start_mark.line + 1)
            _walk(item, path + (i,), lines, problems)


def parse_yaml(text: str) -> tuple[Any, Lines, list[Problem]]:
    """``yaml.safe_load`` plus a map from key paths to line numbers; duplicate keys are problems."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: Lines = {(): 1}
        problems: list[Problem] = []
        if node is None:
            return None, lines, problems
        lines[()] = node.start_mark.line + 1
        _walk(node, (), lines, problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            where = e.context_mark
            at = f" at line {where.line + 1}" if where is not None and where.line != mark.line else ""
            what = f"{e.problem} ({e.context}{at})"
        return None, {(): 1}, [Problem((), f"YAML syntax error: {what}", line=line)]
    except yaml.YAMLError as e:
        return None, {(): 1}, [Problem((), f"YAML error: {e}", line=1)]
    finally:
        loader.dispose()
    return data, lines, problems


def line_of(loc: tuple, lines: Lines) -> int:
    """The line of the longest prefix of ``loc`` that the file has (keys as in YAML)."""
    for n in range(len(loc), -1, -1):
        prefix = tuple(p if isinstance(p, int) and not isinstance(p, bool) else str(p) for p in loc[:n])
        if prefix in lines:
            return lines[prefix]
    return 1


# --- data → Suite --------------------------------------------------------------------------

def _allowed_keys(loc: tuple) -> Optional[list[str]]:
    if not loc:
        return [k for k in Suite.model_fields if k != "source_path"]
    models = {"prompts": PromptSource, "seeds": SeedRange, "timing": Timing}
    if len(loc) == 1 and loc[0] in models:
        return list(models[loc[0]].model_fields)
    if len(loc) == 2 and loc[0] == "constraints":
        return list(Bound.model_fields)
    return None


def _render(problems: list[Problem], lines: Lines, file: str) -> list[str]:
    placed = [(p.line if p.line is not None else line_of(p.loc, lines), i, p) for i, p in enumerate(problems)]
    placed.sort(key=lambda t: (t[0], t[1]))
    out: list[str] = []
    for line, _, p in placed:
        text = p.render(file, line)
        if text not in out:
            out.append(text)
    return out


def suite_from_data(data: Any, file: str = "<suite>", lines: Optional[Lines] = None,
                    source_path: Optional[Path] = None) -> Suite:
    """Validate plain data into a Suite; raise one SuiteError with every problem found."""
    lines = lines or {(): 1}
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SuiteError([f"{file}:1: a suite must be a mapping with keys name, model, prompts, ... (got {got})"])
    problems: list[Problem] = []
    if "source_path" in data:
        problems.append(Problem(("source_path",), "unknown key 'source_path' (set from the file's location)"))
        data = {k: v for k, v in data.items() if k != "source_path"}
    suite: Optional[Suite] = None
    try:
        suite = Suite.model_validate({**data, "source_path": source_path}, context={"defer_checks": True})
    except ValidationError as e:
        # metrics problems come from the semantic checks, one per option with its own line
        problems += [p for p in from_validation_error(e, data, allowed_keys_at=_allowed_keys)
                     if p.loc[:1] != ("metrics",)]
    skip = {p.loc[0] for p in problems if p.loc}
    checked = check_suite(data, base_dir=source_path.parent if source_path else None, skip=skip)
    problems += checked.problems
    if problems or suite is None:
        raise SuiteError(_render(problems, lines, file))
    return suite.checked(checked.configs, checked.prompts)  # validated and expanded once


def load_suite(path_or_builtin_name: Union[str, Path]) -> Suite:
    """Load a suite from a YAML path, or a builtin suite by name (``smoke``)."""
    arg = path_or_builtin_name
    path = Path(arg).expanduser()
    file = str(arg)
    if not path.is_file():
        builtins = builtin_suites()
        name = str(arg)
        if isinstance(arg, str) and name in builtins:
            path, file = builtins[name], str(builtins[name])
        elif path.is_dir():
            raise UserError(f"{arg} is a folder; give the path of a suite .yaml file")
        elif isinstance(arg, Path) or "/" in name or "\\" in name or path.suffix in (".yaml", ".yml"):
            raise UserError(f"suite file not found: {arg}")
        else:
            raise UserError(f"unknown suite '{name}'{did_you_mean(name, list(builtins))}; "
                            f"builtin suites: {', '.join(builtins)} (or give the path of a .yaml file)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read suite {file}: {e}") from None
    data, lines, problems = parse_yaml(text)
    if problems:
        raise SuiteError(_render(problems, lines, file))
    return suite_from_data(data, file=file, lines=lines, source_path=path.resolve())


# --- problems found after loading (a missing model folder) ----------------------------------

_MODEL_KEYS = ("model", "defaults", "matrix", "include", "reference")  # where a config's model can be set


def _model_loc(data: Any, model: str) -> tuple:
    """The first key path whose value sets the model to ``model`` (``("model",)`` when none is found)."""
    def walk(node: Any, loc: tuple):
        if isinstance(node, dict):
            for key, value in node.items():
                if loc == () and key not in _MODEL_KEYS:
                    continue
                if key == "model" and value == model:
                    return loc + (key,)
                if key == "model" and isinstance(value, list) and model in value:
                    return loc + (key, value.index(model))
                found = walk(value, loc + (key,))
                if found:
                    return found
        elif isinstance(node, list):
            for i, item in enumerate(node):
                found = walk(item, loc + (i,))
                if found:
                    return found
        return None

    return walk(data, ()) or ("model",)


def model_problem(suite: Suite, model: str, message: str) -> str:
    """``file:line: model: message`` at the line of the suite file that sets ``model``, as the schema
    errors read (``model: message`` for a suite built in Python)."""
    data, lines = suite.raw(), {(): 1}
    file = None
    if suite.source_path is not None:
        try:
            data, lines, _ = parse_yaml(suite.source_path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError):
            pass
        file = _shown(suite.source_path)
    loc = _model_loc(data, model)
    return Problem(loc, message).render(file, line_of(loc, lines) if file else None)


def _shown(path: Path) -> str:
    """A path as the user most likely typed it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
