"""The profiler (``profile: true`` / ``run --profile``): one more, untimed call per config, traced; its trace in
``profiles/``, its top operators in the store and the report, and what changed between two configs.

The torch part runs on random:tiny-sd; the rest on the fake backends of ``fake_backend.py``, whose timings
are deterministic, so that a run with the profiler and one without give equal figures.
"""

from __future__ import annotations

import gzip
import json
import queue
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

import fake_backend
import t2ibench
from html_page import ParsedPage
from t2ibench.cli import main
from t2ibench.reports.profile import diff_base, diff_ops, render_profiles_html
from t2ibench.store import RunStore
from t2ibench.suites import load_suite
from t2ibench.suites.knobs import Knobs
from t2ibench.suites.schema import config_id

fake_backend.register()
fake_backend.register_profiled()

LATENCY = ["latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "images_per_s", "encode_ms_mean",
           "denoise_ms_mean", "decode_ms_mean", "step_ms_mean", "n_ok", "n_failed"]


def _suite(tmp_path: Path, name: str = "suite.yaml", **over) -> Path:
    data = {"name": "prof", "model": "fake:model", "prompts": ["a red cube", "a cat", "a lighthouse"],
            "seeds": [0, 1], "defaults": {"backend": fake_backend.PROFILED, "steps": 2, "width": 32, "height": 32},
            "matrix": {"steps": [1, 2]}, "timing": {"warmup": 1, "repeats": 2}}
    data.update(over)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the knob -------------------------------------------------------------------------------------

def test_profile_is_a_measurement_knob_outside_config_id():
    plain, profiled = Knobs(steps=3), Knobs(steps=3, profile=True)
    assert profiled.profile and "profile" not in profiled.hashed()
    assert config_id("m", plain) == config_id("m", profiled)
    assert config_id("m", Knobs(steps=4, profile=True)) != config_id("m", plain)  # the other knobs still count


def test_a_named_config_keeps_its_profile_when_it_matches_a_matrix_config(tmp_path):
    suite = load_suite(_suite(tmp_path, include=[{"name": "traced", "steps": 2, "profile": True}]))
    configs = {c.name: c for c in suite.configs()}
    assert set(configs) == {"steps=1", "traced"}  # the same id as steps=2: one config, named by the include
    assert configs["traced"].knobs.profile and not configs["steps=1"].knobs.profile


def test_run_profile_flag_keeps_every_builtin_config_id():
    from t2ibench.orchestration import profiled

    for name in ("smoke",):
        suite = load_suite(name)
        traced = profiled(suite)
        assert [c.config_id for c in traced.configs()] == [c.config_id for c in suite.configs()]
        assert all(c.knobs.profile for c in traced.configs()) and not any(c.knobs.profile for c in suite.configs())


def test_a_measurement_knob_sets_no_configs_apart_in_the_reports():
    from t2ibench.reports.labels import varying_knobs

    assert varying_knobs([{"steps": 2, "profile": True}, {"steps": 2, "profile": False}]) == []
    assert varying_knobs([{"steps": 2, "profile": True}, {"steps": 3, "profile": False}]) == ["steps"]


# --- the profiled call is never timed ------------------------------------------------------------

def test_the_profiled_call_enters_no_latency_figure_and_results_equal_a_run_without_it(tmp_path, capsys):
    path = _suite(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "plain"), "--no-metrics"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "traced"), "--no-metrics", "--profile"]) == 0
    plain = pd.read_csv(tmp_path / "plain" / "results.csv").set_index("config_id")
    traced = pd.read_csv(tmp_path / "traced" / "results.csv").set_index("config_id")
    assert list(traced.index) == list(plain.index)  # --profile keeps the config ids
    pd.testing.assert_frame_equal(traced[LATENCY], plain[LATENCY])
    assert not plain["profile"].any() and traced["profile"].all()
    with RunStore.open(tmp_path / "traced") as store:
        calls, cells, ops = store.calls(), store.cells(), store.profile_ops()
    # 3 prompts × 2 seeds, batch 1: 6 timed calls per config, 2 repeats each, none of them the profiled one
    for cid in traced.index:
        mine = [c for c in calls if c["config_id"] == cid]
        assert len(mine) == 6 and all(len(c["samples"]) == 2 for c in mine)
        assert fake_backend.PROFILED_MS not in [s for c in mine for s in c["samples"]] + [c["latency_ms"] for c in mine]
        assert fake_backend.PROFILED_MS not in [c["latency_ms"] for c in cells if c["config_id"] == cid]
        assert json.loads(traced.loc[cid, "applied"])["profile"] == f"profiles/{cid}.json.gz"
        # the store keeps the top 20 of the 25 operators, the costliest first
        assert [op["name"] for op in ops[cid]] == [f"op{i}" for i in range(20)]
        assert [op["rank"] for op in ops[cid]] == list(range(20))
        trace = json.loads(gzip.decompress((tmp_path / "traced" / "profiles" / f"{cid}.json.gz").read_bytes()))
        assert len(trace["traceEvents"]) == fake_backend.N_OPS
    assert not (tmp_path / "plain" / "profiles").exists()
    with RunStore.open(tmp_path / "plain") as store:
        assert store.profile_ops() == {}
    # a finished config is not run again: --profile on it says so, and changes nothing
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tmp_path / "plain"), "--no-metrics", "--profile"]) == 0
    assert "note: 2 configs with profile: true already done, so not profiled" in capsys.readouterr().err
    assert not (tmp_path / "plain" / "profiles").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "traced"), "--no-metrics", "--profile"]) == 0
    assert "not profiled" not in capsys.readouterr().err  # those have their profiles


def test_a_backend_without_a_profiler_runs_and_says_so(tmp_path):
    path = _suite(tmp_path, defaults={"backend": "fake", "steps": 2, "width": 32, "height": 32, "profile": True})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    results = run.results()
    assert set(results["n_ok"]) == {6} and set(results["status"]) == {"done"}
    notes = {json.loads(a)["profile"] for a in results["applied"]}
    assert notes == {"not taken: backend 'fake' has no profiler"}
    assert not (tmp_path / "run" / "profiles").exists()
    assert "Profiles" not in (tmp_path / "run" / "report.html").read_text()


def test_a_failed_profile_leaves_the_timed_results(tmp_path, monkeypatch):
    def broken(self, prompts, seeds, knobs, path):
        raise RuntimeError("profiler exploded")

    monkeypatch.setattr(fake_backend.ProfilingFakeModel, "profile", broken)
    run = t2ibench.run(_suite(tmp_path), out=tmp_path / "run", device="cpu", metrics=False, profile=True)
    results = run.results()
    assert set(results["n_ok"]) == {6} and set(results["status"]) == {"done"}
    assert {json.loads(a)["profile"] for a in results["applied"]} == {"failed: RuntimeError: profiler exploded"}


# --- torch.profiler on random:tiny-sd ------------------------------------------------------------

def test_torch_profile_writes_a_chrome_trace_and_its_top_operators(tmp_path, monkeypatch):
    from t2ibench.backends.torch.engine import TorchModel

    calls: list[int] = []
    real_call = TorchModel._call
    monkeypatch.setattr(TorchModel, "_call", lambda self, *a: calls.append(1) or real_call(self, *a))
    path = _suite(tmp_path, model="random:tiny-sd", prompts=["a red cube"],
                  defaults={"steps": 2, "width": 32, "height": 32, "guidance_scale": 5.0},
                  matrix={"steps": [1, 2]}, timing={"warmup": 0, "repeats": 1})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False, profile=True)
    ids = list(run.results()["config_id"])
    assert len(calls) == 2 * (2 + 1)  # per config: 2 timed calls (2 seeds), then the profiled one
    with RunStore.open(run.run_dir) as store:
        assert len(store.calls()) == 4  # the timed ones only
        ops = store.profile_ops()
    assert sorted(ops) == sorted(ids)
    for cid in ids:
        top = ops[cid]
        assert 0 < len(top) <= 20 and [op["rank"] for op in top] == list(range(len(top)))
        selfs = [op["self_ms"] for op in top]
        assert selfs == sorted(selfs, reverse=True) and selfs[0] > 0
        assert len({op["name"] for op in top}) == len(top) and all(op["device"] == "cpu" for op in top)
        assert all(op["calls"] >= 1 and op["total_ms"] >= op["self_ms"] - 1e-9 for op in top)
        assert any(op["shapes"].startswith("[[") for op in top)  # record_shapes
        trace = json.loads(gzip.decompress((run.run_dir / "profiles" / f"{cid}.json.gz").read_bytes()))
        events = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
        assert events and any("Input Dims" in e.get("args", {}) for e in events)
        # the costliest operator, independently: its calls and total time are its trace events' count and
        # summed durations (µs); its name is never nested in itself, so the sum counts no time twice
        first = top[0]
        mine = [e for e in events if e["name"] == first["name"]]
        assert len(mine) == first["calls"]
        assert sum(e["dur"] for e in mine) / 1000 == pytest.approx(first["total_ms"], rel=1e-3, abs=1e-3)
    html = (run.run_dir / "report.html").read_text()
    assert 'id="profiles"' in html and 'id="profile-diff"' in html
    assert all(f'href="profiles/{cid}.json.gz"' in html for cid in ids)


# --- the diff ------------------------------------------------------------------------------------

BASE = [{"name": "aten::conv", "self_ms": 10.0}, {"name": "aten::mm", "self_ms": 4.0},
        {"name": "aten::gelu", "self_ms": 1.0}]
CAND = [{"name": "aten::conv", "self_ms": 5.0}, {"name": "aten::mm", "self_ms": 6.0},
        {"name": "aten::sdpa", "self_ms": 2.0}]


def test_diff_gives_ratios_new_and_vanished_ops_the_largest_change_first():
    changes = diff_ops(BASE, CAND)
    assert [c.name for c in changes] == ["aten::conv", "aten::mm", "aten::sdpa", "aten::gelu"]  # |Δ| 5, 2, 2, 1
    by = {c.name: c for c in changes}
    assert by["aten::conv"].ratio == 0.5 and by["aten::mm"].ratio == 1.5
    assert (by["aten::sdpa"].change, by["aten::sdpa"].ratio, by["aten::sdpa"].base_ms) == ("new", None, None)
    assert (by["aten::gelu"].change, by["aten::gelu"].cand_ms) == ("vanished", None)
    assert diff_ops(BASE, BASE) and all(c.ratio == 1.0 for c in diff_ops(BASE, BASE))


def _ops(table: list[dict]) -> list[dict]:
    return [dict(op, rank=i, total_ms=op["self_ms"], calls=1, shapes="[[1]]", device="cpu")
            for i, op in enumerate(table)]


def test_the_report_shows_each_profile_and_what_changed_against_the_reference():
    rows = [{"config_id": "a" * 12, "config": "fast <b>", "is_reference": False},
            {"config_id": "b" * 12, "config": "reference", "is_reference": True},
            {"config_id": "c" * 12, "config": "not profiled", "is_reference": False}]
    profiles = {"a" * 12: _ops(CAND), "b" * 12: _ops(BASE)}
    assert diff_base([r for r in rows if r["config_id"] in profiles])["config"] == "reference"
    page = ParsedPage()
    page.feed(render_profiles_html(rows, profiles))
    text = "".join(page.text)
    assert "What changed against reference" in text
    assert "fast <b>: 1 new, 1 vanished; top operators' self time 15.000 → 13.000 ms (×0.87)" in text
    assert "×0.50" in text and "×1.50" in text and "not profiled" not in text
    assert [a["href"] for t, a in page.tags if t == "a" and a["href"].startswith("profiles/")] == \
        [f"profiles/{'a' * 12}.json.gz", f"profiles/{'b' * 12}.json.gz"]
    assert [a["class"] for t, a in page.tags if t == "tr" and a.get("class") in ("new", "vanished")] == \
        ["new", "vanished"]
    assert "b" not in {t for t, _ in page.tags}  # a config name stays text
    assert render_profiles_html(rows, {}) == ""
    one = render_profiles_html(rows, {"a" * 12: _ops(CAND)})
    assert 'id="profiles"' in one and "profile-diff" not in one  # nothing to compare with


# --- the store and the Ray executor's sink ---------------------------------------------------------

def test_a_store_written_before_profiles_reads_and_reports(tmp_path):
    run = t2ibench.run(_suite(tmp_path), out=tmp_path / "run", device="cpu", metrics=False)
    with sqlite3.connect(run.run_dir / "run.sqlite") as conn:
        conn.execute("DROP TABLE profile_ops")
    with RunStore.open(run.run_dir) as store:  # read-only: no upgrade, no table
        assert store.profile_ops() == {}
    assert main(["report", str(run.run_dir), "--format", "html"]) == 0
    with RunStore.open(run.run_dir, write=True) as store:  # a writer adds the table
        assert store.profile_ops() == {}
        store.put_profile_ops("x", [fake_backend.ProfiledOp("aten::mm", 2.0, 3.0, 4)])
        assert [(o["name"], o["rank"], o["calls"]) for o in store.profile_ops()["x"]] == [("aten::mm", 0, 4)]


def test_the_ray_sink_forwards_a_profile_to_the_driver():
    from t2ibench.harness import ray_executor
    from t2ibench.harness.plan import RunPlan
    from t2ibench.suites import Timing

    events: queue.Queue = queue.Queue()
    ray_executor._QueueSink(events, encode_inline=True).config_profiled("config", b"trace", ["op"])
    kind, args = events.get_nowait()

    class Sink:
        got = None

        def config_profiled(self, *a):
            Sink.got = a

    ray_executor._Replay(Sink(), RunPlan(groups=(), timing=Timing(), devices=("cpu",))).apply(None, kind, args)
    assert Sink.got == ("config", b"trace", ["op"])
