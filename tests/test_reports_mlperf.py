"""The MLPerf SDXL verdict on synthetic metric values: ranges, prerequisites, and which configs it judges."""

from __future__ import annotations

import math

import numpy as np
import pytest

import t2ibench
from t2ibench.reports.mlperf import RANGES, verdicts


@pytest.fixture()
def suite(tmp_path):
    """The builtin sdxl-mlperf suite, resolved, with 5,000 caption prompts and an existing statistics file."""
    resolved = t2ibench.load_suite("sdxl-mlperf").resolved()
    stats = tmp_path / "coco2014-val-5k.npz"
    np.savez(stats, mu=np.zeros(2), sigma=np.eye(2))
    resolved["metrics"]["fid"]["against"] = str(stats)
    resolved["prompt_source"] = {"source": "captions_source.tsv", "column": "caption"}
    resolved["prompts"] = [{"prompt_id": f"p{i}", "text": "a"} for i in range(5000)]
    return resolved


def _row(suite, **values):
    config = suite["configs"][0]
    return {"config_id": config["config_id"], "config": config["name"], "random_weights": "", **values}


@pytest.mark.parametrize("fid,clip,passed", [
    (23.5, 31.75, True),
    (RANGES["fid"][0], RANGES["clip_score"][1], True),  # the bounds are accepted
    (22.9, 31.75, False),
    (23.5, 31.9, False),
    (math.nan, 31.75, False),  # FID not measured
])
def test_ranges(suite, fid, clip, passed):
    (v,) = verdicts(suite, [_row(suite, fid=fid, clip_score=clip)])
    assert v.passed is passed and not v.missing
    assert v.lines()[0].startswith("MLPerf SDXL " + ("PASS" if passed else "FAIL"))


def test_server_p99_bound(suite):
    ok = _row(suite, fid=23.5, clip_score=31.75, scenario="server", latency_ms_p99=19_000.0)
    slow = {**ok, "latency_ms_p99": 21_000.0}
    assert verdicts(suite, [ok])[0].passed and not verdicts(suite, [slow])[0].passed
    assert any("Server p99" in line and "FAIL" in line for line in verdicts(suite, [slow])[0].lines())
    offline = _row(suite, fid=23.5, clip_score=31.75)  # no server row: the p99 bound does not apply
    assert [c[0] for c in verdicts(suite, [offline])[0].checks] == ["fid", "clip_score"]


def test_missing_prerequisites_make_it_fail_and_are_named(tmp_path):
    resolved = t2ibench.load_suite("sdxl-mlperf").resolved()  # parti prompts, no statistics file here
    resolved["model"] = "random:sdxl"
    for c in resolved["configs"]:
        c["model"] = "random:sdxl"
    row = {"config_id": resolved["configs"][0]["config_id"], "config": "default", "fid": 23.5,
           "clip_score": 31.75, "random_weights": "clip_score,fid"}
    (v,) = verdicts(resolved, [row])
    text = "\n".join(v.lines())
    assert not v.passed and all(ok for _, ok, _ in v.checks)  # in range, yet not an MLPerf result
    assert "5,000 COCO-2014 captions" in text and "500 prompts from parti" in text
    assert "statistics file" in text and "random weights" in text and "random:sdxl" in text


def test_other_settings_get_no_verdict(suite):
    other = {**suite, "configs": [{**c, "knobs": {**c["knobs"], "steps": 30}} for c in suite["configs"]]}
    assert verdicts(other, [_row(suite, fid=23.5, clip_score=31.75)]) == []
    assert verdicts(t2ibench.load_suite("smoke").resolved(), []) == []
