"""The events a worker reports to its :class:`~t2ibench.harness.worker.ResultSink`: typed, frozen and picklable,
so that the local recorder and the Ray executor (which ships them from its actors) read the same fields.

- :class:`CellsDone`: one pipeline call and the cells it made (or its error);
- :class:`ConfigEnded`: a config is over (done, skipped or failed), with the cells it leaves and its facts;
- :class:`LevelDone`: one load level of a load-scenario config: its requests and the images it served.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from t2ibench.backends.engine import CallOutcome
from t2ibench.harness.plan import CellTask
from t2ibench.store import LevelRow, RequestRow
from t2ibench.suites import Config


@dataclass(frozen=True)
class CellsDone:
    """One timed call of ``config`` on ``cells``: its median repeat (``outcome``, None when the call raised:
    ``error`` says why), the peak memory (vram MB or None, rss MB), its index among the config's calls in this
    worker (from 0) and every repeat's latency in ms (``samples``, empty for a failed call)."""

    config: Config
    cells: tuple[CellTask, ...]
    outcome: CallOutcome | None
    error: str
    peak: tuple[float | None, float]
    call_index: int
    samples: tuple[float, ...] = ()


@dataclass(frozen=True)
class ConfigFacts:
    """What a config's run learned besides its calls; every field is optional (a config that failed to load
    knows none). ``applied``: what the engine observed of the knobs; ``traceback``: of a load or setup
    failure."""

    load_ms: float | None = None
    export_ms: float | None = None  # the part of load_ms an export engine spent exporting
    warmup_ms: float | None = None
    compile_ms: float | None = None
    recompiles: int = 0
    applied: dict[str, Any] | None = None
    traceback: str | None = None

    def merged(self, later: "ConfigFacts") -> "ConfigFacts":
        """These facts with ``later``'s filling the gaps (a config split across shards): the first known
        value of each field stays, and recompiles add up."""
        values = {f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(later, f.name)
                  for f in fields(self)}
        return replace(self, **{**values, "recompiles": self.recompiles + later.recompiles})


@dataclass(frozen=True)
class ConfigEnded:
    """``config`` is over with ``status`` (done | skipped | failed). ``cells``: those it never ran, recorded with
    that status and ``reason`` (empty for a config that ran them all); a done config's cells are recorded
    ``skipped`` (a load level that sent fewer requests than the suite has cells)."""

    config: Config
    status: str
    reason: str = ""
    cells: tuple[CellTask, ...] = ()
    facts: ConfigFacts = field(default_factory=ConfigFacts)


@dataclass(frozen=True)
class ServedCell:
    """A cell served by a load level: the request that asked for it (by index in the level), whether an image
    came back ("ok" | "failed", with ``error``), and its pixels (HxWx3 uint8, PNG bytes once shipped by the Ray
    executor, or None)."""

    cell: CellTask
    request_index: int
    status: str
    error: str = ""
    pixels: Any = None


@dataclass(frozen=True)
class LevelDone:
    """One load level of ``config``: its row, every scheduled request, and the cells its requests served. A
    search's probe levels come with ``served=()`` and ``level.final`` False: only the final level's images are
    the config's cells."""

    config: Config
    level: LevelRow
    requests: tuple[RequestRow, ...] = ()
    served: tuple[ServedCell, ...] = ()
