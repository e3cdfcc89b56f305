"""One rule for relative paths in a suite file: they resolve against the suite file's folder.

The loader applies :func:`resolve_suite_paths` to the plain data of a suite read from a file, before
validation, so every later step (config ids, the engine, the metrics) sees absolute paths. It covers
the model (``model:`` and the ``model`` knob), ``base:``, a ``vae:`` spec, LoRA ``source``\\ s, an ``upscale``
``model``, and the metrics' ``against`` folders or ``.npz`` files and ``weights``/``pretrained`` files. Prompt files
resolve against the same folder when they are read (:func:`t2ibench.suites.prompts.resolve_prompts`).

Only a string that looks like a path is resolved: it starts with ``./``, ``../``, ``/`` or ``~``, ends
with a known file suffix, or names something that exists in the suite's folder. Hub ids
(``org/name``), ``random:`` specs and keywords (``reference``, ``default``, ``tiny``) stay as written,
so a suite without relative paths keeps its config ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FILE_SUFFIXES = (".safetensors", ".ckpt", ".gguf", ".npz", ".bin", ".pt", ".pth")
_KNOB_SECTIONS = ("defaults", "reference")
_LIST_SECTIONS = ("include", "exclude")
_KEYWORDS = {"reference", "default", "tiny"}


def looks_like_path(value: str, base_dir: Path, existing: bool = True) -> bool:
    """True for ``./x``, ``../x``, ``/x``, ``~/x``, ``x.safetensors`` (a known suffix) or (when ``existing``) a
    name existing in ``base_dir``; never for ``random:`` specs or keywords."""
    if not value or value in _KEYWORDS or value.startswith("random:") or "://" in value:
        return False
    if value.startswith(("./", "../", "/", "~")) or value in (".", ".."):
        return True
    if value.lower().endswith(FILE_SUFFIXES):
        return True
    if not existing:
        return False
    try:
        return (base_dir / value).exists()
    except (OSError, ValueError):
        return False


def resolve_path(value: Any, base_dir: Path, existing: bool = True) -> Any:
    """``value`` made absolute against ``base_dir`` when it is a string that looks like a path."""
    if not isinstance(value, str) or not looks_like_path(value, base_dir, existing):
        return value
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~nobody/x": left as written, the model check reports it
        return value
    if not path.is_absolute():
        path = base_dir / path
    return os.path.normpath(path)


def _knob_value(key: str, value: Any, base_dir: Path) -> Any:
    if key in ("model", "base", "vae"):
        return resolve_path(value, base_dir)
    if key == "lora" and isinstance(value, list):
        return [{**a, "source": resolve_path(a.get("source"), base_dir)}
                if isinstance(a, dict) and "source" in a else a for a in value]
    if key == "upscale" and isinstance(value, dict) and "model" in value:
        return {**value, "model": resolve_path(value["model"], base_dir)}
    return value


def _knobs(mapping: Any, base_dir: Path) -> Any:
    if not isinstance(mapping, dict):
        return mapping
    return {k: _knob_value(k, v, base_dir) for k, v in mapping.items()}


def _metric_options(options: Any, base_dir: Path) -> Any:
    if not isinstance(options, dict):
        return options
    out = dict(options)
    for key in ("against", "weights", "pretrained"):
        if key in out:  # a pretrained tag ("openai") is a path only when written as one
            out[key] = resolve_path(out[key], base_dir, existing=key != "pretrained")
    return out


def resolve_suite_paths(data: Any, base_dir: Path) -> Any:
    """A copy of a suite's plain data with its relative paths made absolute against ``base_dir``.

    Data of the wrong shape is returned as it is, for validation to report."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if "model" in out:
        out["model"] = resolve_path(out["model"], base_dir)
    for section in _KNOB_SECTIONS:
        if section in out:
            out[section] = _knobs(out[section], base_dir)
    for section in _LIST_SECTIONS:
        if isinstance(out.get(section), list):
            out[section] = [_knobs(entry, base_dir) for entry in out[section]]
    if isinstance(out.get("matrix"), dict):
        out["matrix"] = {k: [_knob_value(k, v, base_dir) for v in values] if isinstance(values, list) else values
                         for k, values in out["matrix"].items()}
    if isinstance(out.get("metrics"), dict):
        out["metrics"] = {name: _metric_options(opts, base_dir) for name, opts in out["metrics"].items()}
    return out
