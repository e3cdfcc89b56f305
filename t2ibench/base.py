"""The shared pydantic base of every typed config model (suites, metric options, backend and executor options)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Base for every config model: strict keys, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
