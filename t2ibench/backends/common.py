"""The knobs every backend understands: their allowed values, and the protocol engines read them through.

A config's knobs are validated in the suites layer (``t2ibench.suites.knobs.Knobs``); engines see them
only through :class:`ConfigKnobs`, declared here, below the suites layer, so that no backend refers
back to it. Each allowed-values ``Literal`` is built from the one tuple beside it.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Protocol

SCHEDULERS: tuple[str, ...] = (
    "ddim", "pndm", "lms", "euler", "euler_a", "heun",
    "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_sde", "unipc", "lcm",
)
SchedulerName = Literal[SCHEDULERS]  # type: ignore[valid-type]

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
PrecisionName = Literal[PRECISIONS]  # type: ignore[valid-type]


class ConfigKnobs(Protocol):
    """What an engine reads of a config: the common knobs, and ``options``, its backend's own options model
    (the model named by the backend's spec, already validated)."""

    steps: int
    guidance_scale: float
    width: int
    height: int
    batch_size: int
    negative_prompt: Optional[str]
    prompt_suffix: str
    precision: str
    scheduler: Optional[str]
    vae: str
    vae_slicing: bool
    vae_tiling: bool
    cache_text_embeddings: bool
    model: Optional[str]
    backend: str
    options: Any

    def knob(self, name: str) -> Any:
        """A knob by name, common or the backend's own (None when the backend has no such knob)."""
