"""Load a suite from YAML (a path or a builtin name), reporting every problem with file and line.

Errors look like ``suites/x.yaml:12: matrix.scheduler[1]: unknown value 'eulr' (did you mean
'euler'?)``: one :class:`~t2ibench.suites.problems.SuiteError` (a ``UserError``) carries all
of them, one per line, in file order.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import ValidationError

from t2ibench.errors import UserError
from t2ibench.registry import did_you_mean
from t2ibench.suites.checks import check_suite
from t2ibench.suites.paths import resolve_suite_paths
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

MAX_DEPTH = 32
"""Deepest nesting a suite may have (real suites need about 5)."""
MAX_NODES = 100_000
"""Most values a suite may hold once its aliases are expanded (stops "billion laughs")."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_TYPED_SCALARS = {f"tag:yaml.org,2002:{t}": name for t, name in
                  (("int", "integer"), ("float", "number"), ("bool", "boolean"), ("timestamp", "date"))}
_UNSUPPORTED_TAGS = {f"tag:yaml.org,2002:{t}": (t, instead) for t, instead in (
    ("set", "a plain list"), ("omap", "a plain mapping"), ("pairs", "a plain mapping"), ("binary", "plain text"))}


class _Shape(Exception):
    """A document too deep, too large or recursive: fatal, it is not constructed."""

    def __init__(self, msg: str, line: int):
        super().__init__(msg)
        self.msg, self.line = msg, line


class _Walk:
    """Walks the node tree once, recording each key path's line and the problems found."""

    def __init__(self, loader: yaml.SafeLoader, lines: Lines, problems: list[Problem]):
        self.loader, self.lines, self.problems = loader, lines, problems
        self.count = 0
        self.active: set[int] = set()  # ids of the nodes being walked (an alias back to one is a cycle)

    def __call__(self, node: yaml.Node, path: tuple) -> None:
        line = node.start_mark.line + 1
        self.count += 1
        if self.count > MAX_NODES:
            raise _Shape(f"the suite holds more than {MAX_NODES} values (anchors and aliases expanded); "
                         "a suite needs far fewer", line)
        if len(path) > MAX_DEPTH:
            raise _Shape(f"nested more than {MAX_DEPTH} levels deep", line)
        if id(node) in self.active:
            raise _Shape("an alias refers to a value that contains it (a recursive structure)", line)
        if node.tag in _UNSUPPORTED_TAGS:
            tag, instead = _UNSUPPORTED_TAGS[node.tag]
            self.problems.append(Problem(path, f"YAML tag !!{tag} is not supported in a suite; use {instead}",
                                         line=line))
            return
        if isinstance(node, yaml.ScalarNode):
            self._scalar(node, path, line)
            return
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            return
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._mapping(node, path)
            else:
                for i, item in enumerate(node.value):
                    self.lines.setdefault(path + (i,), item.start_mark.line + 1)
                    self(item, path + (i,))
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, path: tuple, line: int) -> None:
        bad = _SURROGATE.search(node.value)
        if bad:
            self.problems.append(Problem(path, f"the escape \\u{ord(bad.group()):x} is half of a UTF-16 pair, "
                                               "not a character; write the character itself", line=line))
        elif node.tag in _TYPED_SCALARS:  # PyYAML raises plain ValueErrors on "!!int x", "0x_", "2001-13-45"
            try:
                yaml.SafeLoader.yaml_constructors[node.tag](self.loader, node)
            except Exception:  # noqa: BLE001 - any failure is a bad value
                self.problems.append(Problem(path, f"invalid {_TYPED_SCALARS[node.tag]} {node.value!r}; "
                                                   "quote it if it is meant as text", line=line))

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> None:
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self(value_node, path)
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode):
                before = len(self.problems)
                self._scalar(key_node, path, line)
                if len(self.problems) > before:
                    continue
            if key in seen:
                self.problems.append(Problem(path + (key,), f"duplicate key '{key}' (first at line {seen[key]})",
                                             line=line))
                continue
            seen[key] = line
            self.lines.setdefault(path + (key,), line)
            self(value_node, path + (key,))


def parse_yaml(text: str) -> tuple[Any, Lines, list[Problem]]:
    """``yaml.safe_load`` plus a map from key paths to line numbers; duplicate keys are problems.

    Documents nested deeper than :data:`MAX_DEPTH`, larger than :data:`MAX_NODES` values or
    recursive (an alias inside its own anchor) are refused before they are constructed.
    """
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters first
        node = loader.get_single_node()
        lines: Lines = {(): 1}
        problems: list[Problem] = []
        if node is None:
            return None, lines, problems
        lines[()] = node.start_mark.line + 1
        _Walk(loader, lines, problems)(node, ())
        if problems:  # the document would not construct, or not as written
            return None, lines, problems
        data = loader.construct_document(node)
    except _Shape as e:
        return None, {(): 1}, [Problem((), e.msg, line=e.line)]
    except RecursionError:
        return None, {(): 1}, [Problem((), f"nested too deeply (a suite may nest at most {MAX_DEPTH} levels)",
                                       line=1)]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            where = e.context_mark
            at = f" at line {where.line + 1}" if where is not None and where.line != mark.line else ""
            what = f"{e.problem} ({e.context}{at})"
        return None, {(): 1}, [Problem((), f"YAML syntax error: {what}", line=line)]
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, max(e.position, 0)) + 1
        what = f"character #x{e.character:04x}" if isinstance(e.character, int) else "a character"
        return None, {(): 1}, [Problem((), f"YAML error: {what} is not allowed in YAML text ({e.reason})",
                                       line=line)]
    except yaml.YAMLError as e:
        return None, {(): 1}, [Problem((), f"YAML error: {' '.join(str(e).split())}", line=1)]
    finally:
        if loader is not None:
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


def _executor_problems(data: dict, problems: list[Problem]) -> list[Problem]:
    """The ``executor:`` problem replaced by one per bad option, each at its own key (and line)."""
    from t2ibench.executors import EXECUTORS, option_problems

    executor = data.get("executor")
    if not isinstance(executor, dict) or not any(p.loc[:1] == ("executor",) for p in problems):
        return problems
    name = executor.get("name", "local")
    if not isinstance(name, str) or name not in EXECUTORS:
        return problems
    found = [Problem(("executor", key), msg)
             for key, msg in option_problems(name, {k: v for k, v in executor.items() if k != "name"})]
    return [p for p in problems if p.loc[:1] != ("executor",)] + found if found else problems


def suite_from_data(data: Any, file: str = "<suite>", lines: Optional[Lines] = None,
                    source_path: Optional[Path] = None) -> Suite:
    """Validate plain data into a Suite; raise one SuiteError with every problem found."""
    lines = lines or {(): 1}
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SuiteError([f"{file}:1: a suite must be a mapping with keys name, model, prompts, ... (got {got})"])
    problems: list[Problem] = []
    if isinstance(data.get("prompts"), str):  # `prompts: prompts.txt` is short for {source: prompts.txt}
        data = {**data, "prompts": {"source": data["prompts"]}}
    if "source_path" in data:
        problems.append(Problem(("source_path",), "unknown key 'source_path' (set from the file's location)"))
        data = {k: v for k, v in data.items() if k != "source_path"}
    if source_path is not None:  # one rule: relative paths resolve against the suite file's folder
        data = resolve_suite_paths(data, source_path.parent)
    suite: Optional[Suite] = None
    try:
        suite = Suite.model_validate({**data, "source_path": source_path}, context={"defer_checks": True})
    except ValidationError as e:
        # metrics problems come from the semantic checks, one per option with its own line
        problems += [p for p in from_validation_error(e, data, allowed_keys_at=_allowed_keys)
                     if p.loc[:1] != ("metrics",)]
    problems = _executor_problems(data, problems)
    skip = {p.loc[0] for p in problems if p.loc}
    checked = check_suite(data, base_dir=source_path.parent if source_path else None, skip=skip)
    problems += checked.problems
    if problems or suite is None:
        raise SuiteError(_render(problems, lines, file))
    return suite.checked(checked.configs, checked.prompts)  # validated and expanded once


def load_suite(path_or_builtin_name: Union[str, Path]) -> Suite:
    """Load a suite from a YAML path, or a builtin suite by name (``smoke``)."""
    arg = path_or_builtin_name
    file = str(arg)
    try:
        path = Path(arg).expanduser()
        is_file = path.is_file()
    except (RuntimeError, OSError) as e:  # "~nobody/x.yaml", a name too long for the file system
        raise UserError(f"cannot open suite {file}: {getattr(e, 'strerror', None) or e}") from None
    if not is_file:
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


def _parsed(suite: Suite) -> tuple[Any, Lines, Optional[str]]:
    """The suite file's plain data as written, its key path → line map, and the file name to show;
    for a suite built in Python, ``suite.raw()`` and no file."""
    if suite.source_path is None:
        return suite.raw(), {(): 1}, None
    try:
        parsed, lines, _ = parse_yaml(suite.source_path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError):
        parsed, lines = suite.raw(), {(): 1}
    return parsed, lines, _shown(suite.source_path)


def suite_lines(suite: Suite) -> tuple[Any, Lines, Optional[str]]:
    """As :func:`_parsed`, with the paths resolved as the loader resolves them (so values match the suite's)."""
    data, lines, file = _parsed(suite)
    if suite.source_path is not None:
        data = resolve_suite_paths(data, suite.source_path.parent)
    return data, lines, file


def _value_at(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def model_problem(suite: Suite, model: str, message: str) -> str:
    """``file:line: model: message`` at the line of the suite file that sets ``model``, as the schema
    errors read (``model: message`` for a suite built in Python). A path written relative says where it
    was looked for."""
    written, lines, file = _parsed(suite)
    data = resolve_suite_paths(written, suite.source_path.parent) if suite.source_path is not None else written
    loc = _model_loc(data, model)
    if file and "does not exist" in message and _value_at(written, loc) not in (None, model):
        message += f" (relative paths in a suite resolve against its folder, {suite.source_path.parent})"
    return Problem(loc, message).render(file, line_of(loc, lines) if file else None)


def _shown(path: Path) -> str:
    """A path as the user most likely typed it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
