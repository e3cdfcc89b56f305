"""Backends: the inference engines, each declared by a :class:`BackendSpec`.

A spec is cheap to import (no torch): it owns the options model of the engine-specific knobs
(validated with the suite), decides which configs share one loaded model (its load key) and
how many warm-up calls a config needs, and names its engine by a ``"module:attribute"`` path
that is imported only when a run needs it. The engine protocol and the timing and memory
helpers engines share are :mod:`.engine`, :mod:`.timing` and :mod:`.memory`.

Adding a backend is one module (its options, spec and engine, heavy imports inside the
engine) plus one line in ``_BUILTIN`` below. Backends never import the suites layer.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from t2ibench.base import Frozen
from t2ibench.registry import Registry


class NoOptions(Frozen):
    """A backend without engine-specific knobs."""


@dataclass(frozen=True)
class Finding:
    """What a backend's preflight found about one config without loading its model.

    ``level``: ``error`` (a user error the run would meet: a LoRA file that does not exist) or ``skip``
    (the engine always skips this config here, and ``message`` says why). ``knob``: the knob it is about,
    ``path``: where inside that knob's value (``(0, "source")`` for the first LoRA's source).
    """

    level: Literal["error", "skip"]
    knob: str
    message: str
    path: tuple = ()


@dataclass(frozen=True)
class BackendSpec:
    """How the runner uses one inference engine.

    ``engine``: ``"module:attr"`` of a zero-argument factory whose result has
    ``load(model, knobs, device) -> LoadedModel`` (see ``t2ibench.backends.engine``).
    ``load_fields``: the knobs whose values need a new load (besides model and backend).
    ``compiles``: whether a config compiles on its first call; such a config always gets a warm-up
    call, and its compile time is reported apart.
    """

    name: str
    engine: str
    options: type[Frozen] = NoOptions
    load_fields: tuple[str, ...] = ()
    compiles: Callable[[Any], bool] = field(default=lambda knobs: False)
    model_check: str = ""  # "module:attr" of a function that checks a model spec before any work
    preflight: str = ""  # "module:attr" of ``f(model, knobs, device) -> list[Finding]``, run before any load
    description: str = ""
    packages: tuple[str, ...] = ()  # modules the engine imports beyond the default install
    extra: str = ""  # the pip extra that installs them
    # offline contract tests (tests/test_contracts.py): a model spec that loads without a download, and sets
    # of runtime knobs, each applied between two configs of the defaults (configure A, B, A: A's pixels)
    test_model: str = ""
    test_options: tuple[dict, ...] = ()

    def missing(self) -> list[str]:
        """The engine's packages that are not installed here."""
        return [m for m in self.packages if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        return f"pip install 't2ibench[{self.extra}]'" if self.extra else f"pip install {' '.join(self.missing())}"

    def load_key(self, model: str, knobs: Any) -> tuple:
        """Configs with equal keys share one loaded model."""
        return (model, *(knobs.knob(f) for f in self.load_fields), self.name)

    def warmup_calls(self, knobs: Any, requested: int) -> int:
        """Warm-up calls before the timed ones: a compiling config always gets one."""
        return max(requested, 1) if self.compiles(knobs) else requested

    def make_engine(self):
        return _resolve(self.engine)()

    def check_model(self, model: str) -> None:
        """Raise a UserError for a model spec that cannot load (a missing folder, an unknown random name)."""
        if self.model_check:
            _resolve(self.model_check)(model)


    def check_config(self, model: str, knobs: Any, device: Optional[str] = None) -> list[Finding]:
        """What can be told about a config without loading it (``device``: None when not known yet)."""
        return list(_resolve(self.preflight)(model, knobs, device)) if self.preflight else []


def _resolve(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


BACKENDS: Registry[BackendSpec] = Registry("backend")

# each module registers its spec on import
_BUILTIN = ("t2ibench.backends.torch", "t2ibench.backends.openvino", "t2ibench.backends.onnxruntime",
            "t2ibench.backends.http")

for _module in _BUILTIN:
    importlib.import_module(_module)
