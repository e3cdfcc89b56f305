"""The engine protocol: what the worker needs from a backend's engine, and what a call returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from t2ibench.backends.timing import CallTiming

if TYPE_CHECKING:  # an engine reads the config's knobs; it never imports the suites layer
    from t2ibench.suites.knobs import Knobs


@dataclass(frozen=True)
class ImageOutcome:
    """One image of a call: ``pixels`` is HxWx3 uint8 (None unless status is ok)."""

    status: str  # ok | nan
    pixels: object | None
    error: str = ""


@dataclass(frozen=True)
class CallOutcome:
    images: list[ImageOutcome]
    timing: CallTiming
    recompiles: int = 0
    cache_hit_rate: float | None = None  # denoiser blocks a step cache skipped / blocks the call would run


@dataclass(frozen=True)
class ProfiledOp:
    """One operator of a profiled call, summed over its calls; times in ms on ``device`` (cpu | cuda | …).

    ``self_ms`` excludes the operators it called, ``total_ms`` includes them. ``shapes``: the input shapes
    of its costliest shape group, as text (empty when the profiler does not record them)."""

    name: str
    self_ms: float
    total_ms: float
    calls: int
    shapes: str = ""
    device: str = "cpu"


class LoadedModel(Protocol):
    """A model loaded for one load key; runtime knobs are applied per config and undone for the next."""

    def configure(self, knobs: Knobs) -> dict:
        """Apply the config's runtime knobs (raises SkipConfig); returns what was observed of them
        (JSON-able: the attention backend really called, the weight classes, the hooks…), recorded
        with the config as ``applied`` when it ends. What only a call can show (the attention function
        really called) the engine may add to this same dict during the config's first call."""

    def warmup(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> float:
        """One untimed call; returns its wall time in ms."""

    def generate(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> CallOutcome: ...

    def peak_memory(self) -> tuple[float | None, float]:
        """(peak VRAM MB or None, peak RSS MB) since the last ``reset_peak_memory``."""

    def reset_peak_memory(self) -> None: ...

    def recover(self) -> None:
        """Free what a failed call left on the device, so that the next call can run."""

    def close(self) -> None: ...


class Engine(Protocol):
    """What a :class:`~t2ibench.backends.BackendSpec`'s ``engine`` factory returns."""

    def load(self, model: str, knobs: "Knobs", device: str, *, trust_remote_code: bool = False) -> LoadedModel:
        """Load ``model``; run code shipped with it only when ``trust_remote_code`` (the suite says so)."""
