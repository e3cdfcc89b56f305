"""The timing protocol for one pipeline call.

Marks are taken at four kinds of boundary: the call's start, the denoiser's first forward
(end of text encoding and latent preparation), the end of every denoising step (the step
callback), and the call's end. On CUDA each mark records a CUDA event and the call
synchronizes once at its end; on CPU marks are ``perf_counter`` readings. The phases
partition the call exactly: ``encode_ms + denoise_ms + decode_ms == latency_ms``, and
``sum(step_ms) == denoise_ms``. All marks are cleared at the start of every call.

A config with ``upscale:`` adds a fifth phase after the engine's call (:mod:`.upscale`):
``encode_ms + denoise_ms + decode_ms + upscale_ms == latency_ms``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallTiming:
    """The phases of one call. They partition it: ``encode_ms + denoise_ms + decode_ms + (upscale_ms or 0)
    == latency_ms``; ``upscale_ms`` is None without an upscale stage."""

    latency_ms: float
    encode_ms: float
    denoise_ms: float
    decode_ms: float
    step_ms: list[float] = field(default_factory=list)
    upscale_ms: float | None = None


class CallTimer:
    """Collects the marks of one call; ``start()`` clears them."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self._marks: list[object] = []
        self._loop_started = False
        self._steps = 0

    def _now(self):
        if self.cuda:
            import torch

            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        self._marks = [self._now()]
        self._loop_started = False
        self._steps = 0

    def denoiser_called(self, *_args, **_kwargs) -> None:
        """Forward pre-hook of the denoiser: the first call ends the encode phase."""
        if not self._loop_started and self._marks:
            self._loop_started = True
            self._marks.append(self._now())

    def step_ended(self, pipe, step, timestep, callback_kwargs):
        """``callback_on_step_end`` of diffusers pipelines; returns the tensors unchanged."""
        self._marks.append(self._now())
        self._steps += 1
        return callback_kwargs

    def stop(self) -> CallTiming:
        end = self._now()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            times = [0.0] + [self._marks[0].elapsed_time(m) for m in self._marks[1:]]
            total = self._marks[0].elapsed_time(end)
        else:
            t0 = self._marks[0]
            times = [(m - t0) * 1000.0 for m in self._marks]
            total = (end - t0) * 1000.0
        if not self._loop_started or self._steps == 0:
            # No denoising loop observed (a pipeline without step callbacks): all time is one phase.
            return CallTiming(latency_ms=total, encode_ms=0.0, denoise_ms=total, decode_ms=0.0, step_ms=[])
        loop_start, step_ends = times[1], times[2:]
        bounds = [loop_start] + step_ends
        step_ms = [b - a for a, b in zip(bounds, bounds[1:])]
        return CallTiming(
            latency_ms=total,
            encode_ms=loop_start,
            denoise_ms=step_ends[-1] - loop_start,
            decode_ms=total - step_ends[-1],
            step_ms=step_ms,
        )
