"""Prompt sources: inline lists, .txt/.csv/.tsv/.jsonl files and the packaged PartiPrompts.

Each source reads rows of ``(text, category)``. ``categories`` filters them, then ``sample``
draws a deterministic, category-stratified subset (see :func:`stratified_sample`). Prompt ids
are a short content hash of the text, so editing other parts of a suite keeps them stable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from pydantic import Field, field_validator

from t2ibench.registry import Registry, did_you_mean
from t2ibench.base import Frozen
from t2ibench.suites.problems import Problem

Row = tuple[str, Optional[str]]  # (text, category)


class Prompt(Frozen):
    """One resolved prompt. ``prompt_id`` is ``p`` + 10 hex digits of sha256(text)."""

    prompt_id: str = Field(pattern=r"^[a-z0-9_-]+$")
    text: str
    category: Optional[str] = None


class PromptSource(Frozen):
    """``prompts: {source: parti, sample: 64, categories: [Animals], column: prompt, seed: 0}``."""

    source: str = Field(min_length=1)  # "parti" or a path to .txt/.csv/.tsv/.jsonl
    sample: Optional[int] = Field(None, ge=1)
    categories: Optional[list[str]] = Field(None, min_length=1)
    column: Optional[str] = None  # csv/tsv/jsonl column holding the prompt text
    seed: int = 0

    @field_validator("source")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class PromptSourceError(Exception):
    """Problems found while reading prompts; locs are suite key paths (``prompts.source``)."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.render() for p in problems))
        self.problems = problems


_SRC = ("prompts", "source")

Reader = Callable[[Path, PromptSource], list[Row]]
PROMPT_SOURCES: Registry[Reader] = Registry("prompt source")
"""Keys: ``parti`` (a named source) and file suffixes ``.txt``, ``.csv``, ``.tsv``, ``.jsonl``."""


def _fail(loc: tuple, msg: str) -> PromptSourceError:
    return PromptSourceError([Problem(loc, msg)])


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise _fail(_SRC, f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise _fail(_SRC, f"cannot read prompt file {path}: {e.strerror or e}") from None


@PROMPT_SOURCES.register(".txt")
def read_txt(path: Path, spec: PromptSource) -> list[Row]:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped."""
    if spec.column is not None:
        raise _fail(("prompts", "column"), "a .txt file has no columns; remove 'column'")
    rows: list[Row] = []
    for line in _text(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append((line, None))
    return rows


def _pick(fieldnames: Sequence[str], wanted: Optional[str], defaults: Sequence[str], path: Path,
          what: str) -> Optional[str]:
    if wanted is not None:
        if wanted not in fieldnames:
            raise _fail(("prompts", "column"), f"no column '{wanted}' in {path}"
                        f"{did_you_mean(wanted, list(fieldnames))}; columns: {', '.join(fieldnames)}")
        return wanted
    for name in defaults:
        if name in fieldnames:
            return name
    if what == "prompt":
        raise _fail(_SRC, f"no 'prompt' column in {path}; columns: {', '.join(fieldnames) or '(none)'}; "
                          "name the column with 'column:'")
    return None


def _read_table(path: Path, spec: PromptSource, delimiter: str, quoting: int) -> list[Row]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    fieldnames = [f for f in (reader.fieldnames or []) if f is not None]
    col = _pick(fieldnames, spec.column, ("prompt", "Prompt"), path, "prompt")
    cat = _pick(fieldnames, None, ("category", "Category"), path, "category")
    rows: list[Row] = []
    for record in reader:
        text = (record.get(col) or "").strip()
        if text:
            category = (record.get(cat) or "").strip() or None if cat else None
            rows.append((text, category))
    return rows


@PROMPT_SOURCES.register(".csv")
def read_csv(path: Path, spec: PromptSource) -> list[Row]:
    """Comma-separated with a header; column ``prompt``/``Prompt`` (or ``column:``), optional ``category``."""
    return _read_table(path, spec, ",", csv.QUOTE_MINIMAL)


@PROMPT_SOURCES.register(".tsv")
def read_tsv(path: Path, spec: PromptSource) -> list[Row]:
    """Tab-separated with a header, no quoting (quotes are part of the text, as in PartiPrompts)."""
    return _read_table(path, spec, "\t", csv.QUOTE_NONE)


@PROMPT_SOURCES.register(".jsonl")
def read_jsonl(path: Path, spec: PromptSource) -> list[Row]:
    """One JSON object a line: ``{"prompt": ..., "category": ...}`` (key ``column:`` if given)."""
    key = spec.column or "prompt"
    rows: list[Row] = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise _fail(_SRC, f"{path}:{number}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(key), str):
            raise _fail(_SRC, f"{path}:{number}: expected an object with a string '{key}'")
        text = obj[key].strip()
        category = obj.get("category")
        if text:
            rows.append((text, str(category) if category not in (None, "") else None))
    return rows


@PROMPT_SOURCES.register("parti")
def read_parti(path: Path, spec: PromptSource) -> list[Row]:
    """The packaged PartiPrompts (1632 prompts, 12 categories; Apache-2.0)."""
    text = resources.files("t2ibench").joinpath("data", "PartiPrompts.tsv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    return [(r["Prompt"].strip(), r["Category"].strip() or None) for r in reader if r["Prompt"].strip()]


NAMED_SOURCES = ("parti",)


def read_source(spec: PromptSource, base_dir: Optional[Path]) -> list[Row]:
    """Read every row of a source (before ``categories`` and ``sample``)."""
    name = spec.source
    if name in NAMED_SOURCES:
        return PROMPT_SOURCES.get(name)(Path(name), spec)
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    suffix = path.suffix.lower()
    if suffix not in PROMPT_SOURCES:
        if not suffix and "/" not in name and "\\" not in name and not path.exists():
            raise _fail(_SRC, f"unknown prompt source '{name}'{did_you_mean(name, list(NAMED_SOURCES))}; "
                              f"use {', '.join(NAMED_SOURCES)} or a .txt/.csv/.tsv/.jsonl file")
        raise _fail(_SRC, f"unsupported prompt file type '{suffix or name}'; "
                          "use .txt, .csv, .tsv or .jsonl")
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise _fail(_SRC, f"prompt file {what}: {path}")
    return PROMPT_SOURCES.get(suffix)(path, spec)


def _order_key(seed: int, text: str, index: int) -> tuple[str, int]:
    digest = hashlib.sha256(f"{seed}\x00{text}".encode("utf-8")).hexdigest()
    return digest, index


def allocate(sizes: dict, n: int) -> dict:
    """Split ``n`` over groups in proportion to ``sizes`` (largest remainder, ties by group order).

    When ``n`` is at least the number of groups, every group gets at least one.
    """
    total = sum(sizes.values())
    keys = list(sizes)
    exact = {k: n * sizes[k] / total for k in keys}
    alloc = {k: int(exact[k]) for k in keys}
    left = n - sum(alloc.values())
    by_remainder = sorted(keys, key=lambda k: (-(exact[k] - alloc[k]), keys.index(k)))
    for k in by_remainder[:left]:
        alloc[k] += 1
    if n >= len(keys):
        for k in keys:
            if alloc[k] == 0:
                donor = max(keys, key=lambda d: (alloc[d], -keys.index(d)))
                alloc[donor] -= 1
                alloc[k] += 1
    return alloc


def stratified_sample(rows: list[Row], n: int, seed: int) -> list[Row]:
    """A deterministic category-stratified sample of ``n`` rows, in the rows' original order.

    Categories get a share proportional to their size (largest-remainder rounding, at least
    one each when ``n`` allows). Inside a category, rows are ranked by sha256(seed, text), so
    the choice is stable across processes and Python versions and does not depend on the
    other categories.
    """
    groups: dict[Optional[str], list[int]] = {}
    for i, (_, category) in enumerate(rows):
        groups.setdefault(category, []).append(i)
    alloc = allocate({k: len(v) for k, v in groups.items()}, n)
    chosen: list[int] = []
    for category, indices in groups.items():
        ranked = sorted(indices, key=lambda i: _order_key(seed, rows[i][0], i))
        chosen.extend(ranked[: alloc[category]])
    return [rows[i] for i in sorted(chosen)]


def prompt_id(text: str) -> str:
    return "p" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def make_prompts(rows: list[Row]) -> list[Prompt]:
    """Prompts with content-hash ids; a repeated text gets ``-2``, ``-3``, … appended."""
    seen: dict[str, int] = {}
    out = []
    for text, category in rows:
        base = prompt_id(text)
        seen[base] = seen.get(base, 0) + 1
        pid = base if seen[base] == 1 else f"{base}-{seen[base]}"
        out.append(Prompt(prompt_id=pid, text=text, category=category))
    return out


def resolve_prompts(prompts: Union[list[str], PromptSource], base_dir: Optional[Path] = None) -> list[Prompt]:
    """Resolve a suite's ``prompts`` value into prompts; raises :class:`PromptSourceError`."""
    if isinstance(prompts, list):
        problems = [Problem(("prompts", i), "empty prompt") for i, t in enumerate(prompts) if not t.strip()]
        if not prompts:
            problems.append(Problem(("prompts",), "no prompts; give a list of strings or {source: ...}"))
        if problems:
            raise PromptSourceError(problems)
        return make_prompts([(t.strip(), None) for t in prompts])

    spec = prompts
    rows = read_source(spec, base_dir)
    if not rows:
        raise _fail(_SRC, f"no prompts in {spec.source}")
    if spec.categories is not None:
        available = sorted({c for _, c in rows if c is not None})
        if not available:
            raise _fail(("prompts", "categories"), f"{spec.source} has no category column to filter on")
        problems = [
            Problem(("prompts", "categories", i),
                    f"unknown category '{c}'{did_you_mean(c, available) or '; categories: ' + ', '.join(available)}")
            for i, c in enumerate(spec.categories) if c not in available
        ]
        if problems:
            raise PromptSourceError(problems)
        wanted = set(spec.categories)
        rows = [r for r in rows if r[1] in wanted]
    if spec.sample is not None:
        if spec.sample > len(rows):
            raise _fail(("prompts", "sample"), f"sample {spec.sample} is more than the {len(rows)} prompts "
                                               "available; lower it or remove 'sample'")
        rows = stratified_sample(rows, spec.sample, spec.seed)
    return make_prompts(rows)
