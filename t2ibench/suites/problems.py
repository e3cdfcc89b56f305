"""Suite problems: a key path plus a message, rendered as ``file:line: key.path[0]: message``."""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Literal, Optional, Sequence, Union, get_args, get_origin

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
    """Drop union-branch tags (``'bool'``, ``'CompileOptions'``, ``'list'``, a discriminator value such as
    ``'first_block'``) that pydantic puts in locs: parts absent from the data that are not the last one."""
    out: list = []
    cur = data
    for i, part in enumerate(loc):
        present = (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur))
        tag = isinstance(part, str) and (_TYPE_TAG.match(part) or (isinstance(cur, dict) and i < len(loc) - 1))
        if not present and tag:
            continue
        out.append(part)
        cur = cur[part] if present else None
    return tuple(out)


def _members(tp: Any) -> list:
    """The types a field annotation may hold: Optional, Union and Annotated unwrapped."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(tp) for m in _members(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_tag(model: type[BaseModel], part: Any) -> bool:
    """``part`` is the discriminator value of ``model`` (a field typed ``Literal[part]``)."""
    return any(get_origin(f.annotation) is Literal and get_args(f.annotation) == (part,)
               for f in model.model_fields.values())


_VALIDATED_TAG = re.compile(r"^function-(?:after|before|wrap|plain)\[.*, (\w+)\]$")


def keys_at(model: type[BaseModel], loc: Loc) -> Optional[list[str]]:
    """The keys allowed at a raw pydantic ``loc`` inside ``model`` (its union tags choose the member), or None
    when the loc does not lead to exactly one model."""
    current: list = [model]
    for part in loc:
        if isinstance(part, str) and (wrapped := _VALIDATED_TAG.match(part)):
            part = wrapped.group(1)  # a union member with a model validator: pydantic tags it by its function
        found: list = []
        for tp in current:
            for member in _members(tp):
                if _is_model(member):
                    if isinstance(part, str) and part in member.model_fields:
                        found.append(member.model_fields[part].annotation)
                    elif part == member.__name__ or _is_tag(member, part):
                        found.append(member)
                elif get_origin(member) in (list, tuple, set, frozenset) and isinstance(part, int):
                    found.append(get_args(member)[0])
                elif get_origin(member) is dict and isinstance(part, str):
                    found.append(get_args(member)[1])
        current = found
    models = list(dict.fromkeys(m for tp in current for m in _members(tp) if _is_model(m)))
    return list(models[0].model_fields) if len(models) == 1 else None


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
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        choices = choices_from_expected(ctx.get("expected_tags", ""))
        hint = did_you_mean(str(ctx.get("tag")), choices)
        return f"unknown value {_short(ctx.get('tag'))}{hint or '; choose one of: ' + ', '.join(choices)}"
    if kind == "union_tag_not_found":
        key = str(err.get("ctx", {}).get("discriminator", "?")).strip("'")
        typo = _misspelt(key, value)
        if typo is not None:
            return f"unknown key '{typo}' (did you mean '{key}'?)"
        return f"required key '{key}' is missing"
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return f"expected a mapping of options (got {_short(value)})"
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


def _tag_loc(err: dict, loc: Loc) -> Loc:
    """A discriminator error points at the discriminator key (or at its misspelt twin)."""
    value = err.get("input")
    key = str(err.get("ctx", {}).get("discriminator", "")).strip("'")
    if err.get("type") == "union_tag_invalid" and key:
        return loc + (key,)
    if err.get("type") == "union_tag_not_found" and _misspelt(key, value) is not None:
        return loc + (_misspelt(key, value),)
    return loc


def _misspelt(key: str, value: Any) -> Optional[str]:
    """The key of mapping ``value`` that looks like a typo of ``key``, if one does."""
    import difflib

    keys = [str(k) for k in value] if isinstance(value, dict) else []
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    return close[0] if close else None


def _branch_mismatch(err: dict) -> bool:
    """An error saying a mapping or list is not a union's scalar branch (noise when the mapping branch erred)."""
    kind = err.get("type", "")
    return isinstance(err.get("input"), (dict, list)) and (kind == "literal_error" or kind.endswith("_type"))


def from_validation_error(
    exc: ValidationError,
    data: Any,
    prefix: Loc = (),
    allowed_keys_at=None,
    model: Optional[type[BaseModel]] = None,
) -> list[Problem]:
    """Convert a pydantic ValidationError into problems with clean key paths.

    Errors at the same path from different union branches are merged into one line.
    ``allowed_keys_at(loc)`` returns the allowed keys for an ``extra_forbidden`` error; with ``model``
    (what ``data`` was validated as), they are found from the model itself, nested models included.
    """
    errors = exc.errors(include_url=False)
    entries: list[tuple[Loc, str, dict]] = []
    for err in errors:
        key_error = _key_error(err)
        if key_error is not None:
            loc, msg = key_error
            entries.append((prefix + _clean_loc(loc, data), msg, err))
            continue
        raw = tuple(err["loc"])
        loc = _tag_loc(err, _clean_loc(raw, data))
        allowed = None
        if err["type"] == "extra_forbidden":
            if model is not None:
                allowed = keys_at(model, raw[:-1])
            if allowed is None and allowed_keys_at is not None:
                allowed = allowed_keys_at(loc[:-1])
        entries.append((prefix + loc, error_message({**err, "loc": loc}, allowed), err))
    merged: dict[Loc, list[str]] = {}
    for loc, msg, err in entries:
        deeper = any(len(other) > len(loc) and other[:len(loc)] == loc for other, _, _ in entries)
        if deeper and _branch_mismatch(err):
            continue
        msgs = merged.setdefault(loc, [])
        if msg not in msgs:
            msgs.append(msg)
    return [Problem(loc, "; or ".join(msgs)) for loc, msgs in merged.items()]


def model_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)
