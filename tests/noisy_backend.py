"""The fake backend, noisy as real packages are while a model loads: a FutureWarning (as QuantoConfig's), a
record of a library logger with its own stderr handler (as diffusers'), one of a logger without handlers
(as bitsandbytes'), and, with ``c_level``, a raw write to file descriptor 2 (as a C extension's)."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import fake_backend
from t2ibench.backends import BACKENDS, BackendSpec

NAME = "noisy"
FUTURE = "noisy_lib: QuantoConfig is deprecated and will be removed"
HANDLED = "noisy_lib: No LoRA keys associated to UNet2DConditionModel found"
BARE = "noisy_bare: Failed to load CPU gemm_4bit_forward from kernels-community"
C_LEVEL = "noisy_c: kernel notice written to fd 2"
NOISES = (FUTURE, HANDLED, BARE)

_library = logging.getLogger("noisy_lib")  # a library logger with its own stderr handler, as diffusers sets up
_library.propagate = False
c_level = False


def emit() -> None:
    _library.handlers.clear()  # set up now, as a library does at import (its stream: the current sys.stderr)
    _library.addHandler(logging.StreamHandler())
    warnings.warn(FUTURE, FutureWarning, stacklevel=1)
    _library.warning(HANDLED)
    logging.getLogger("noisy_bare").warning(BARE)
    if c_level:
        os.write(2, (C_LEVEL + "\n").encode())


class NoisyEngine(fake_backend.FakeEngine):
    def load(self, model, knobs, device, *, trust_remote_code=False):
        emit()
        return super().load(model, knobs, device, trust_remote_code=trust_remote_code)


def register() -> None:
    if NAME not in BACKENDS:
        BACKENDS.add(NAME, BackendSpec(name=NAME, engine="noisy_backend:NoisyEngine", load_fields=("precision",)))


if __name__ == "__main__":  # python noisy_backend.py ARGS...: the CLI, noisy also before the run directory exists
    import noisy_backend
    from t2ibench import orchestration
    from t2ibench.cli import main

    noisy_backend.c_level = True
    noisy_backend.register()
    check_models = orchestration.check_models

    def noisy_check(suite):
        noisy_backend.emit()
        check_models(suite)

    orchestration.check_models = noisy_check
    sys.exit(main(sys.argv[1:]))
