"""The backend protocol: what a runner needs from an inference engine (PyTorch now, ONNX Runtime later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from t2ibench.harness.timing import CallTiming
from t2ibench.registry import Registry
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


class LoadedModel(Protocol):
    """A model loaded for one load key; runtime knobs are applied per config."""

    def configure(self, knobs: Knobs) -> dict:
        """Apply the config's runtime knobs (raises SkipConfig); returns facts such as compile_ms."""

    def warmup(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> None: ...

    def generate(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> CallOutcome: ...

    def peak_memory(self) -> tuple[float | None, float]:
        """(peak VRAM MB or None, peak RSS MB) since the last ``reset_peak_memory``."""

    def reset_peak_memory(self) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def load(self, model: str, knobs: Knobs, device: str, *, trust_remote_code: bool = False) -> LoadedModel:
        """Load ``model``; run code shipped with it only when ``trust_remote_code`` (the suite says so)."""


BACKENDS: Registry[Callable[[], Backend]] = Registry("backend")


@BACKENDS.register("torch")
def _torch_backend() -> Backend:
    from t2ibench.harness.torch_backend import TorchBackend

    return TorchBackend()
