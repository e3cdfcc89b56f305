"""Every metric module imports on its own, first, in a fresh interpreter (no import circle through the registry)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import t2ibench.metrics

MODULES = sorted(m.name for m in pkgutil.iter_modules(t2ibench.metrics.__path__))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module):
    code = f"import t2ibench.metrics.{module}; from t2ibench.metrics import FID; assert FID.higher_is_better is False"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
