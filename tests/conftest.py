"""Shared test helpers: small suites written to a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("T2IBENCH_OFFLINE", "1")

TINY_PROMPTS = ["a red cube on a table", "a lighthouse at dusk", "a cat in sunglasses"]


def suite_dict(**overrides) -> dict:
    suite = {
        "name": "t",
        "model": "random:tiny-sd",
        "prompts": list(TINY_PROMPTS),
        "seeds": [0, 1],
        "defaults": {"steps": 3, "width": 64, "height": 64, "guidance_scale": 5.0},
        "timing": {"warmup": 1, "repeats": 1},
    }
    suite.update(overrides)
    return {k: v for k, v in suite.items() if v is not None}


@pytest.fixture
def write_suite(tmp_path: Path):
    """``write_suite(name="x", matrix={...})`` → path of a suite YAML in tmp_path."""

    def write(filename: str = "suite.yaml", **overrides) -> Path:
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(suite_dict(**overrides), sort_keys=False))
        return path

    return write
