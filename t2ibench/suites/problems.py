"""Suite problems: a key path plus a message, rendered as ``file:line: key.path[0]: message``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from pydantic import BaseModel, ValidationError

from t2ibench.errors import UserError
from t2ibench.registry import did_you_mean

Loc = tuple  # tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a suite, at a key path such as ``("matrix", "scheduler", 1)``."""

    loc: Loc
    msg: str
    line: Optional[int] = None  # set when the problem has a line of its own (YAML syntax)

    def render(self, file: Optional[str] = None, line: Optional[int] = None) -> str:
        line = self.line if self.line is not None else line
        head = ""
        if file is not None:
            head = f"{file}:{line}: " if line is not None else f"{file}: "
        path = keypath(self.loc)
        return one_line(f"{head}{path}: {self.msg}" if path else f"{head}{self.msg}")


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def one_line(text: str) -> str:
    """``text`` with line breaks, control and bidi characters written as escapes (``\\n``, ``\\u202e``)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class SuiteError(UserError):
    """A suite with one or more problems; ``str()`` renders every problem, one per line."""

    def __init__(self, problems: Sequence[str]):
        problems = list(problems) or ["invalid suite"]
        super().__init__(problems[0], problems=problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


class SuiteProblems(SuiteError):
    """Problems not yet tied to a file (a Suite built in Python); the loader adds file:line."""

    def __init__(self, problems: Sequence[Problem]):
        self.items = list(problems)
        super().__init__([p.render() for p in self.items])


def keypath(loc: Iterable[Any]) -> str:
    """``("matrix", "scheduler", 1)`` → ``matrix.scheduler[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --- pydantic errors → problems ------------------------------------------------------------

_TYPE_TAG = re.compile(r"^(bool|int|float|str|list|dict|none|[A-Z]\w*|[a-z-]+\[.*\])$")


def _clean_loc(loc: Loc, data: Any) -> Loc:
    """Drop union-branch tags (``'bool'``, ``'CompileOptions'``, ``'list'``) that pydantic puts in locs."""
    out: list = []
    cur = data
    for part in loc:
        present = (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur))
        if not present and isinstance(part, str) and _TYPE_TAG.match(part):
            continue
        out.append(part)
        cur = cur[part] if present else None
    return tuple(out)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def choices_from_expected(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


def error_message(err: dict, allowed_keys: Optional[Sequence[str]] = None) -> str:
    """A readable message for one pydantic error dict."""
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        key = err["loc"][-1] if err.get("loc") else "?"
        hint = did_you_mean(str(key), list(allowed_keys)) if allowed_keys else ""
        if not hint and allowed_keys:
            hint = f"; allowed keys: {', '.join(allowed_keys)}"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        choices = choices_from_expected(err.get("ctx", {}).get("expected", ""))
        hint = did_you_mean(str(value), choices)
        return f"unknown value {_short(value)}{hint or '; choose one of: ' + ', '.join(choices)}"
    msg = err.get("msg", "invalid value")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    msg = msg[:1].lower() + msg[1:]
    if kind not in ("value_error", "assertion_error") and not isinstance(value, (dict, list)):
        msg += f" (got {_short(value)})"
    return msg


def _key_error(err: dict) -> Optional[tuple[Loc, str]]:
    """A mapping key that is not a string (YAML ``1:``, ``null:``, ``2024-01-01:``): (parent loc, message)."""
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "invalid_key":
        return loc[:-1], f"key {_short(err.get('input'))} is not a string; quote it"
    if loc and loc[-1] == "[key]":
        return loc[:-2], f"key {_short(err.get('input'))} is not a string; quote it"
    return None


def from_validation_error(
    exc: ValidationError,
    data: Any,
    prefix: Loc = (),
    allowed_keys_at=None,
) -> list[Problem]:
    """Convert a pydantic ValidationError into problems with clean key paths.

    Errors at the same path from different union branches are merged into one line.
    ``allowed_keys_at(loc)`` returns the allowed keys for an ``extra_forbidden`` error.
    """
    merged: dict[Loc, list[str]] = {}
    for err in exc.errors(include_url=False):
        key_error = _key_error(err)
        if key_error is not None:
            loc, msg = key_error
            merged.setdefault(prefix + _clean_loc(loc, data), []).append(msg)
            continue
        loc = _clean_loc(tuple(err["loc"]), data)
        allowed = None
        if err["type"] == "extra_forbidden" and allowed_keys_at is not None:
            allowed = allowed_keys_at(loc[:-1])
        msg = error_message({**err, "loc": loc}, allowed)
        msgs = merged.setdefault(prefix + loc, [])
        if msg not in msgs:
            msgs.append(msg)
    return [Problem(loc, "; or ".join(msgs)) for loc, msgs in merged.items()]


def model_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)
