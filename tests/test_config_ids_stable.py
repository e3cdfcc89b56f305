"""Every builtin suite's config_ids, recorded before the knobs were split into common knobs and each
backend's own options (issue 21): a refactor of the knobs must not change an id (stored results
are found by it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2ibench.suites import builtin_suites, load_suite

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "builtin_config_ids.json").read_text())


@pytest.mark.parametrize("suite", sorted(RECORDED))
def test_builtin_config_ids_are_unchanged(suite):
    configs = load_suite(suite).configs()
    assert {c.name: c.config_id for c in configs} == RECORDED[suite], \
        {c.name: c.knobs.hashed() for c in configs if RECORDED[suite].get(c.name) != c.config_id}


def test_every_builtin_suite_is_recorded():
    assert set(builtin_suites()) >= set(RECORDED)
