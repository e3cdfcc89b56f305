"""A small fake backend for contract tests: deterministic images from (prompt, seed), real timing marks.

``prompt_suffix: FAIL`` makes every call of a config raise; ``steps`` sets the number of step marks.
``fake_profiled`` (:func:`register_profiled`) also profiles, and its timings are a function of the call's
prompts, seeds and steps, so that two runs give equal figures; its profiled call takes ``PROFILED_MS``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import numpy as np

from t2ibench.backends import BACKENDS, BackendSpec
from t2ibench.backends.engine import CallOutcome, ImageOutcome, ProfiledOp
from t2ibench.backends.memory import MemoryTracker
from t2ibench.backends.timing import CallTimer, CallTiming

NAME = "fake"
PROFILED = "fake_profiled"
PROFILED_MS = 99_999.0  # the latency of a profiled call: it shows wherever that call is counted
N_OPS = 25  # operators a profiled call reports (the store keeps the top 20)


class FakeModel:
    def __init__(self, model: str, precision: str):
        self.model, self.precision = model, precision
        self.configured: dict = {}
        self.timer = CallTimer(cuda=False)
        self.memory = MemoryTracker(cuda=False)
        self.closed = False
        self.recovered = 0

    def configure(self, knobs) -> dict:
        self.configured = {"steps": knobs.steps, "suffix": knobs.prompt_suffix}  # replaced, never accumulated
        return {}

    def _image(self, prompt: str, seed: int, knobs) -> np.ndarray:
        digest = hashlib.sha256(f"{self.model}|{prompt}{knobs.prompt_suffix}|{seed}|{knobs.steps}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return rng.integers(1, 256, (knobs.height, knobs.width, 3), dtype=np.uint8)

    def generate(self, prompts: list[str], seeds: list[int], knobs) -> CallOutcome:
        if knobs.prompt_suffix == "FAIL":
            raise RuntimeError("fake failure")
        self.timer.start()
        time.sleep(0.001)
        self.timer.denoiser_called()
        for step in range(knobs.steps):
            np.linalg.svd(np.ones((40, 40)))  # some work per step
            self.timer.step_ended(None, step, None, {})
        images = [ImageOutcome("ok", self._image(p, s, knobs)) for p, s in zip(prompts, seeds)]
        timing = self.timer.stop()
        return CallOutcome(images, timing)

    def warmup(self, prompts, seeds, knobs) -> float:
        t0 = time.perf_counter()
        self.generate(prompts, seeds, knobs)
        return (time.perf_counter() - t0) * 1000.0

    def peak_memory(self):
        return None, self.memory.peak_rss_mb()

    def reset_peak_memory(self) -> None:
        self.memory.reset()

    def recover(self) -> None:
        self.recovered += 1

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    def load(self, model: str, knobs, device: str, *, trust_remote_code: bool = False) -> FakeModel:
        return FakeModel(model, knobs.precision)


class ProfilingFakeModel(FakeModel):
    """Deterministic timings, and a profiler: ``profile`` makes one more call, as the torch engine does."""

    def __init__(self, model: str, precision: str):
        super().__init__(model, precision)
        self.profiling = False
        self.profiled_calls = 0

    def generate(self, prompts, seeds, knobs) -> CallOutcome:
        real = super().generate(prompts, seeds, knobs)
        digest = hashlib.sha256(f"{prompts}|{seeds}|{knobs.steps}".encode()).digest()
        latency = PROFILED_MS if self.profiling else 10.0 + digest[0] / 8.0
        step = latency / 2 / knobs.steps
        timing = CallTiming(latency, latency / 4, step * knobs.steps, latency / 4, [step] * knobs.steps)
        return CallOutcome(real.images, timing)

    def profile(self, prompts, seeds, knobs, path) -> list[ProfiledOp]:
        self.profiling, self.profiled_calls = True, self.profiled_calls + 1
        try:
            self.generate(prompts, seeds, knobs)
        finally:
            self.profiling = False
        ops = [ProfiledOp(f"op{i}", self_ms=float(N_OPS - i), total_ms=float(2 * (N_OPS - i)), calls=i + 1,
                          shapes=f"[[{i}]]") for i in range(N_OPS)]
        events = [{"name": op.name, "ph": "X", "ts": i, "dur": op.self_ms * 1000} for i, op in enumerate(ops)]
        with gzip.open(path, "wt") as f:
            json.dump({"traceEvents": events}, f)
        return ops


class ProfilingFakeEngine:
    def load(self, model: str, knobs, device: str, *, trust_remote_code: bool = False) -> ProfilingFakeModel:
        return ProfilingFakeModel(model, knobs.precision)


def register_profiled() -> None:
    if PROFILED not in BACKENDS:
        BACKENDS.add(PROFILED, BackendSpec(name=PROFILED, engine="fake_backend:ProfilingFakeEngine",
                                           load_fields=("precision",)))


def register() -> None:
    if NAME not in BACKENDS:
        BACKENDS.add(NAME, BackendSpec(name=NAME, engine="fake_backend:FakeEngine", load_fields=("precision",),
                                       test_model="fake:model"))
