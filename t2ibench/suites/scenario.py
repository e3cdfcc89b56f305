"""The ``scenario`` knob: how a config's requests arrive (MLPerf's scenarios, and vllm-omni's load shapes).

- ``single_stream`` (the default): one call after another in this process, as before scenarios existed;
- ``offline``: every request submitted at once, throughput first (MLPerf Offline);
- ``server``: open-loop arrivals at ``rate`` requests/s, ``poisson`` (default) or ``constant``, from a fixed
  arrival ``seed``; or ``search: {slo_ms, attainment}``: the highest rate meeting the SLO, by bisection;
- ``concurrency``: a closed loop keeping ``concurrency`` requests in flight;
- ``trace``: a JSONL of ``{t, prompt, width, height, steps, seed, slo_ms}`` requests replayed at their times.

Every kind but ``single_stream`` is a *load* scenario: its requests go over HTTP to an endpoint (the config's
``backend: http`` endpoint, or ``endpoint: self``: t2ibench serves the config itself in a subprocess), and
each level (one rate, one concurrency) is one config. ``rate``, ``concurrency`` and ``slo_ms`` may be lists:
:func:`expand_levels` makes one config per value. The server options (``max_batch_size``, ``max_wait_ms``,
``max_queue``, ``exact_batches``) configure ``endpoint: self``'s dynamic batching and queue. A scenario left at
``single_stream`` dumps to nothing new, so every config_id written before scenarios stays the same.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, model_validator

from t2ibench.base import Frozen

KINDS: tuple[str, ...] = ("single_stream", "offline", "server", "concurrency", "trace")
LOAD_KINDS: tuple[str, ...] = KINDS[1:]
ARRIVALS: tuple[str, ...] = ("poisson", "constant")
LEVEL_FIELDS: tuple[str, ...] = ("rate", "concurrency", "slo_ms")  # may be lists: one config per value


class SingleStream(Frozen):
    """One call after another in this process (today's measurement)."""

    kind: Literal["single_stream"] = "single_stream"


class Search(Frozen):
    """``search: {slo_ms: 5000, attainment: 0.99}``: the highest rate whose share of requests within ``slo_ms``
    is at least ``attainment``, bisected between ``low`` and ``high`` requests/s in ``iterations`` probes after
    the bracketing ones (as MLPerf's loadgen finds a Server scenario's rate)."""

    slo_ms: float = Field(gt=0)
    attainment: float = Field(0.99, gt=0, le=1)
    low: float = Field(0.05, gt=0)
    high: Optional[float] = Field(None, gt=0)  # None: doubled from ``low`` until the SLO fails
    iterations: int = Field(5, ge=1, le=20)

    @model_validator(mode="after")
    def _bracket(self) -> "Search":
        if self.high is not None and self.high <= self.low:
            raise ValueError(f"search high ({self.high}) must be above low ({self.low})")
        return self


class _Load(Frozen):
    """What every load scenario shares: its SLO, its length, the client's warm-up and cap, and the server's
    batching and queue (for ``endpoint: self``)."""

    slo_ms: Optional[float] = Field(None, gt=0)  # a request within it counts toward goodput
    requests: Optional[int] = Field(None, gt=0, le=1_000_000)  # default: one per prompt × seed cell
    duration_s: Optional[float] = Field(None, gt=0)  # stop scheduling after it (with requests: whichever first)
    warmup_requests: int = Field(1, ge=0, le=10_000)  # sent before the level, excluded from every figure
    max_in_flight: int = Field(1024, ge=1, le=100_000)  # client-side cap; requests that waited for it are counted
    timeout_s: float = Field(600.0, gt=0)  # per request, from its send
    max_batch_size: int = Field(1, ge=1, le=256)  # server: compatible requests grouped into one pipeline call
    max_wait_ms: float = Field(0.0, ge=0, le=60_000)  # server: how long a batch waits to fill
    max_queue: int = Field(64, ge=1, le=100_000)  # server: queued requests before 503 + Retry-After
    exact_batches: bool = True  # server: each image equals its lone image bit for bit (so one image per call)


class Offline(_Load):
    """Every request submitted at once (MLPerf Offline): throughput first."""

    kind: Literal["offline"] = "offline"


class Server(_Load):
    """Open-loop arrivals at ``rate`` requests/s (MLPerf Server), or ``search`` for the highest rate meeting an SLO."""

    kind: Literal["server"] = "server"
    rate: Optional[float] = Field(None, gt=0, le=100_000)
    arrival: Literal[ARRIVALS] = "poisson"  # type: ignore[valid-type]
    seed: int = Field(0, ge=0)  # of the arrival times: every run of a level sends at the same instants
    search: Optional[Search] = None

    @model_validator(mode="after")
    def _rate_or_search(self) -> "Server":
        if (self.rate is None) == (self.search is None):
            raise ValueError("a server scenario needs either rate (requests/s) or search: {slo_ms, attainment}")
        return self


class Concurrency(_Load):
    """A closed loop: ``concurrency`` requests in flight, a new one sent as each ends."""

    kind: Literal["concurrency"] = "concurrency"
    concurrency: int = Field(gt=0, le=100_000)


class Trace(_Load):
    """A replayed JSONL trace: one ``{t, prompt, width, height, steps, seed, slo_ms}`` object per line (``t``:
    seconds from the start; the other fields optional). ``path`` is relative to the suite file."""

    kind: Literal["trace"] = "trace"
    path: str = Field(min_length=1)
    time_scale: float = Field(1.0, gt=0)  # 0.5 replays twice as fast


Scenario = Annotated[Union[SingleStream, Offline, Server, Concurrency, Trace], Field(discriminator="kind")]
LoadScenario = Union[Offline, Server, Concurrency, Trace]


def scenario_input(value: Any) -> Any:
    """A bare kind (``offline``) is the mapping ``{kind: offline}``; a mapping without ``kind`` is an error."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and "kind" not in value:
        raise ValueError(f"a scenario mapping needs 'kind', one of: {', '.join(KINDS)}")
    return value


def is_load(scenario: Any) -> bool:
    """True for a scenario whose requests go over HTTP (every kind but single_stream)."""
    return getattr(scenario, "kind", "single_stream") in LOAD_KINDS


def expand_levels(values: dict) -> list[tuple[dict, str]]:
    """One knob mapping per level: ``scenario: {kind: server, rate: [1, 2]}`` → two mappings, each with one rate,
    and the suffix that names its level (``rate=1``); a mapping without list levels is returned as it is, with ''."""
    scenario = values.get("scenario")
    if not isinstance(scenario, dict):
        return [(values, "")]
    keys = [k for k in LEVEL_FIELDS if isinstance(scenario.get(k), list) and scenario[k]]
    if not keys:
        return [(values, "")]
    out = []
    for combo in itertools.product(*(scenario[k] for k in keys)):
        level = dict(zip(keys, combo))
        out.append(({**values, "scenario": {**scenario, **level}}, " ".join(f"{k}={v:g}" if isinstance(v, (int, float))
                                                                             and not isinstance(v, bool) else f"{k}={v}"
                                                                             for k, v in level.items())))
    return out


def label(scenario: Any) -> str:
    """A short name of a scenario for config names and tables: ``server rate=2 slo_ms=5000``."""
    if scenario is None:
        return "single_stream"
    if isinstance(scenario, dict):
        data = scenario
    else:
        data = scenario.model_dump(mode="json", exclude_defaults=True)
        data["kind"] = scenario.kind
    parts = [str(data.get("kind", "?"))]
    for key in ("rate", "concurrency", "slo_ms", "arrival", "search", "path", "max_batch_size", "exact_batches"):
        if key in data and data[key] is not None:
            value = data[key]
            if isinstance(value, bool):
                parts.append(f"{key}={str(value).lower()}")
            elif isinstance(value, (int, float)):
                parts.append(f"{key}={value:g}")
            else:
                parts.append(f"{key}={value}")
    return " ".join(parts)
