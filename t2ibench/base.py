"""The shared pydantic base of every typed config model (suites, metric options, backend and executor options)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class Frozen(BaseModel):
    """Base for every config model: strict keys, immutable, finite floats (no NaN or infinity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _none_word(value: Any) -> Any:
    """``none`` (the word, as in ``quantize: [none, int8wo]``) means the knob is off: the same as leaving it unset."""
    return None if isinstance(value, str) and value.strip().lower() == "none" else value


Off = BeforeValidator(_none_word)
"""Annotate an ``Optional`` option with it: the word ``none`` is the option left unset."""


def plural(n: int, noun: str, many: str = "") -> str:
    """``1 prompt``, ``2 prompts``, ``0 images``: a count with its noun (``many``: an irregular plural)."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"
