"""The suite schema: frozen pydantic models for a suite, its configs and its prompts.

A :class:`Suite` is what a suite YAML says; :meth:`Suite.configs` expands it into
:class:`Config` objects with content-hashed ids, :meth:`Suite.prompt_list` and
:meth:`Suite.seed_list` resolve the prompts and seeds. Build suites from files with
:func:`t2ibench.suites.load_suite`, which reports problems with file and line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    SerializeAsAny,
    StrictBool,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from t2ibench.base import Frozen
from t2ibench.executors import ExecutorChoice
from t2ibench.suites.knobs import Knobs
from t2ibench.suites.prompts import Prompt, PromptSource

__all__ = ["Suite", "Config", "Prompt", "PromptSource", "SeedRange", "Timing", "Bound", "config_id"]

NAME_PATTERN = r"^[a-z0-9_-]+$"
MAX_SEED = 2**63 - 1
"""Seeds are signed 64-bit integers (the store's INTEGER column, torch generators)."""


class SeedRange(Frozen):
    """``seeds: {count: 4, start: 0}`` → seeds ``start .. start+count-1``."""

    count: int = Field(ge=1, le=100_000)
    start: int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _last_seed(self) -> "SeedRange":
        if self.start + self.count - 1 > MAX_SEED:
            raise ValueError(f"the last seed, start + count - 1, must be at most {MAX_SEED}")
        return self


class Timing(Frozen):
    """``timing: {warmup: 1, repeats: 1}``: warm-up calls per config (not measured), repeats per image;
    ``max_consecutive_failures``: after that many failed calls in a row, the rest of a config is skipped."""

    warmup: int = Field(1, ge=0, le=100)
    repeats: int = Field(1, ge=1, le=100)
    max_consecutive_failures: int = Field(3, ge=1, le=10_000)


class Bound(Frozen):
    """A constraint on one results column: ``{max: 12000}``, ``{min: 30}`` or both; ``rate: 2`` holds it at an
    offered rate (requests/s): only configs served at that rate can meet it."""

    min: Optional[float] = None
    max: Optional[float] = None
    rate: Optional[float] = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "Bound":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_id(model: str, knobs: Knobs) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of ``{model, knobs}`` (see ``Knobs.hashed``)."""
    payload = canonical_json({"model": model, "knobs": knobs.hashed()})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


class Config(Frozen):
    """One configuration to run: a model and fully resolved knobs.

    ``config_id`` is computed from ``model`` and ``knobs`` when not given; the name is not
    part of it, so renaming an ``include`` entry keeps its id (and its stored results).
    """

    config_id: str
    name: str
    model: str
    knobs: Knobs
    is_reference: bool = False

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "config_id" not in data and "model" in data and "knobs" in data:
            knobs = data["knobs"] if isinstance(data["knobs"], Knobs) else Knobs.model_validate(data["knobs"])
            data = {**data, "knobs": knobs, "config_id": config_id(data["model"], knobs)}
        return data

    @model_validator(mode="after")
    def _check_id(self) -> "Config":
        expected = config_id(self.model, self.knobs)
        if self.config_id != expected:
            raise ValueError(f"config_id {self.config_id} does not match its model and knobs ({expected})")
        return self

    def load_key(self) -> tuple:
        """Configs with the same key share one loaded model; the backend decides which knobs need a new load."""
        from t2ibench.backends import BACKENDS

        return BACKENDS.get(self.knobs.backend).load_key(self.model, self.knobs)


def _prompts_tag(value: Any) -> str:
    return "PromptSource" if isinstance(value, (dict, PromptSource)) else "list"


def _seeds_tag(value: Any) -> str:
    return "SeedRange" if isinstance(value, (dict, SeedRange)) else "list"


PromptsField = Annotated[
    Union[
        Annotated[list[str], Tag("list")],
        Annotated[PromptSource, Tag("PromptSource")],
    ],
    Discriminator(_prompts_tag),
]
SeedsField = Annotated[
    Union[
        Annotated[list[Annotated[int, Field(ge=0, le=MAX_SEED)]], Field(min_length=1), Tag("list")],
        Annotated[SeedRange, Tag("SeedRange")],
    ],
    Discriminator(_seeds_tag),
]

_EMPTY_DICT_FIELDS = ("defaults", "matrix", "metrics", "objectives", "constraints", "gates")
_EMPTY_LIST_FIELDS = ("exclude", "include")


class Suite(Frozen):
    """A benchmark suite: prompts × seeds × configs, the metrics to compute and how to judge them."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    model: str = Field(min_length=1)
    prompts: PromptsField
    seeds: SeedsField = Field(default_factory=lambda: [0])
    defaults: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, list[Any]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(default_factory=list)
    reference: Optional[dict[str, Any]] = None
    metrics: dict[str, SerializeAsAny[Frozen]] = Field(default_factory=dict)  # name -> its options model
    timing: Timing = Field(default_factory=Timing)
    objectives: dict[str, Literal["min", "max"]] = Field(default_factory=dict)
    constraints: dict[str, Bound] = Field(default_factory=dict)
    gates: dict[str, Union[float, str]] = Field(default_factory=dict)
    executor: ExecutorChoice = Field(default_factory=ExecutorChoice)
    trust_remote_code: StrictBool = False  # run a hub/folder model's own Python code: only when the suite says so
    source_path: Optional[Path] = Field(None, exclude=True)

    _configs: Optional[list[Config]] = PrivateAttr(default=None)
    _prompts: Optional[list[Prompt]] = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _none_is_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in _EMPTY_DICT_FIELDS:
                if key in data and data[key] is None:
                    data[key] = {}
            for key in _EMPTY_LIST_FIELDS:
                if key in data and data[key] is None:
                    data[key] = []
            if data.get("timing", 0) is None:
                data["timing"] = {}
            if isinstance(data.get("prompts"), str):  # `prompts: prompts.txt` is short for {source: prompts.txt}
                data["prompts"] = {"source": data["prompts"]}
        return data

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_options(cls, value: Any) -> Any:
        """``[fid, clip_score]`` or ``{fid: {...}}`` → each metric's options model, from the metric registry."""
        from t2ibench.suites.checks import metric_problems

        problems, options = metric_problems(value)
        if problems:
            raise ValueError(problems[0].render())
        return options

    @model_validator(mode="after")
    def _semantics(self, info: ValidationInfo) -> "Suite":
        from t2ibench.suites.checks import check_suite
        from t2ibench.suites.problems import SuiteProblems

        if not (info.context or {}).get("defer_checks"):
            checked = check_suite(self.raw(), base_dir=self.base_dir())
            if checked.problems:
                raise SuiteProblems(checked.problems)
            self._configs, self._prompts = checked.configs, checked.prompts
        return self

    def checked(self, configs: Optional[list[Config]], prompts: Optional[list[Prompt]]) -> "Suite":
        """Keep the configs and prompts that validation built (the loader's checks), so they are not rebuilt."""
        self._configs, self._prompts = configs, prompts
        return self

    # --- identity --------------------------------------------------------------------------

    def raw(self) -> dict:
        """The fields as plain data (what a YAML file would hold), without ``source_path``.

        ``trust_remote_code`` appears only when true, so suites that never set it keep their hash.
        """
        exclude = {"source_path"} if self.trust_remote_code else {"source_path", "trust_remote_code"}
        return self.model_dump(mode="json", exclude=exclude)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Suite):
            return NotImplemented
        return canonical_json(self.raw()) == canonical_json(other.raw())

    def __hash__(self) -> int:
        return hash(canonical_json(self.raw()))

    def model_copy(self, *, update: Optional[dict] = None, deep: bool = False) -> "Suite":
        """A copy; with ``update``, the cached configs and prompts are dropped (no re-validation)."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._configs = None
            copy._prompts = None
        return copy

    def base_dir(self) -> Optional[Path]:
        """The folder relative paths in the suite resolve against (the suite file's folder)."""
        return self.source_path.parent if self.source_path is not None else None

    def resolve_path(self, path: Union[str, Path]) -> Path:
        """A path from the suite (a prompt file, a metric's ``against``), made absolute."""
        p = Path(path).expanduser()
        if not p.is_absolute():
            p = (self.base_dir() or Path.cwd()) / p
        return p

    # --- expansion -------------------------------------------------------------------------

    def configs(self) -> list[Config]:
        """Matrix × − exclude + include + reference, deduplicated by config_id (first kept)."""
        if self._configs is None:
            from t2ibench.suites.expand import expand
            from t2ibench.suites.problems import SuiteProblems

            configs, problems = expand(self.raw())
            if problems:
                raise SuiteProblems(problems)
            self._configs = configs
        return list(self._configs)

    expand = configs

    def select(self, keep: Callable[[Config], bool]) -> "Suite":
        """A copy of this suite that runs only the configs for which ``keep`` is true."""
        copy = self.model_copy()
        copy._configs = [c for c in self.configs() if keep(c)]
        return copy

    def reference_config(self) -> Optional[Config]:
        return next((c for c in self.configs() if c.is_reference), None)

    def prompt_list(self) -> list[Prompt]:
        """The resolved prompts, in a deterministic order, with content-hash ids."""
        if self._prompts is None:
            from t2ibench.suites.prompts import PromptSourceError, resolve_prompts
            from t2ibench.suites.problems import SuiteProblems

            try:
                self._prompts = resolve_prompts(self.prompts, self.base_dir())
            except PromptSourceError as e:
                raise SuiteProblems(e.problems) from None
        return list(self._prompts)

    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, SeedRange):
            return list(range(self.seeds.start, self.seeds.start + self.seeds.count))
        return list(self.seeds)

    def resolved(self) -> dict:
        """The fully resolved suite as JSON-able data (for manifest.json)."""
        out = self.raw()
        out["source_path"] = str(self.source_path) if self.source_path is not None else None
        out["prompt_source"] = out.pop("prompts")
        out["prompts"] = [p.model_dump(mode="json") for p in self.prompt_list()]
        out["seeds"] = self.seed_list()
        out["configs"] = [c.model_dump(mode="json") for c in self.configs()]
        return out
