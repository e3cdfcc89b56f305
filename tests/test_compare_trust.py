"""compare that a CI can trust, on hand-built summaries: nothing compared is an error, environment
differences and unstable timings are said, the table fits 80 columns; latency noise statistics and the
recommendation's CI rule on hand-computed cases."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from rich.console import Console

from t2ibench.cli import main
from t2ibench.errors import UserError
from t2ibench.reports import compare_cli
from t2ibench.reports.compare import compare
from t2ibench.reports.compare_cli import COLUMNS, print_comparison, render_markdown
from t2ibench.reports.export import ConfigSummary, MetricSummary, RunSummary, run_environment, write_summary
from t2ibench.reports.latency import instability, median_ci
from t2ibench.reports.recommend import recommend

ENV = {"device": "cpu", "gpu": None, "cpu": "Some CPU", "torch_threads": 2, "torch": "2.5.0", "diffusers": "0.31.0",
       "executor": "local", "actors": None, "share_gpus": False, "git_commit": "aaa"}
NAMES = ["steps=2 scheduler=ddim quantize=int8wo", "steps=20 scheduler=dpmpp_2m_karras precision=fp16", "ref [fp32]"]


def _config(i: int, name: str, latency: list[float], clip: float = 30.0) -> ConfigSummary:
    keys = [f"p{k}:0" for k in range(6)]
    per_image = dict(zip(keys, clip + np.linspace(-1, 1, 6)))
    metrics = {"clip_score": MetricSummary(clip, clip - 0.5, clip + 0.5, 6, False, per_image),
               "fid": MetricSummary(20.0 + i, 18.0 + i, 22.0 + i, 6, False),
               "lpips_diversity": MetricSummary(0.1147, 0.1, 0.13, 6, False)}
    figures = {"n_ok": 6.0, "latency_ms_p50": float(np.median(latency)), "peak_rss_mb": 872.12, "peak_vram_mb": None}
    return ConfigSummary(f"{i:012x}", name, "random:tiny-sd", {"steps": 2}, "done", figures, latency, metrics)


def _summary(source: str, env: dict | None = None, names=NAMES, scale: float = 1.0, noisy: bool = False,
             clip: float = 30.0) -> RunSummary:
    rng = np.random.default_rng(len(source))
    configs = []
    for i, name in enumerate(names):
        latency = list(scale * (466.3 + 10 * i) * (1 + 0.01 * rng.standard_normal(24)))
        if noisy:  # a busy machine: every fourth call four times slower
            latency = [x * (4 if k % 4 == 0 else 1) for k, x in enumerate(latency)]
        configs.append(_config(i, name, latency, clip))
    return RunSummary(source, "trust", {}, dict(ENV, **(env or {})), configs)


def _files(tmp_path, base: RunSummary, cand: RunSummary) -> tuple[str, str]:
    return str(write_summary(base, tmp_path / "base.json")), str(write_summary(cand, tmp_path / "cand.json"))


# --- nothing compared ----------------------------------------------------------------------------

def test_no_config_in_common_is_exit_2(tmp_path, capsys):
    base, cand = _files(tmp_path, _summary("a", names=["a1", "a2"]), _summary("b", names=["b1"]))
    data = json.loads((tmp_path / "cand.json").read_text())
    data["configs"][0]["config_id"] = "ffffffffffff"  # no id and no name in common
    (tmp_path / "cand.json").write_text(json.dumps(data))
    for extra in ([], ["--json"], ["--markdown"]):
        assert main(["compare", base, cand, *extra]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and "nothing compared" in err[0] and "Traceback" not in err[0]
        assert "no regression" not in captured.out


def test_shared_configs_without_results_compare_nothing():
    base = _summary("a", names=["x"])
    failed = RunSummary("b", "trust", {}, ENV, [ConfigSummary(base.configs[0].config_id, "x", "m", {}, "failed",
                                                              {"peak_rss_mb": None}, [], {})])
    with pytest.raises(UserError, match="nothing compared.*x failed"):
        compare(base, failed)


def test_run_baseline_with_nothing_in_common_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setattr(compare_cli, "summarize", lambda run_dir: _summary("new", names=["other"]))
    baseline = _summary("old", names=["mine"])
    baseline = RunSummary("old", "trust", {}, ENV, [ConfigSummary("eeeeeeeeeeee", *list(vars(baseline.configs[0])
                                                                                   .values())[1:])])
    with pytest.raises(UserError, match="nothing compared"):
        compare_cli.check_baseline(baseline, tmp_path)


def test_plugin_fails_when_nothing_is_compared(monkeypatch, tmp_path, write_suite):
    import types

    from t2ibench import orchestration
    from t2ibench.pytest_plugin import RegressionCheck
    from t2ibench.reports import export

    monkeypatch.setattr(orchestration, "execute", lambda suite, **kw: types.SimpleNamespace(run_dir=tmp_path))
    monkeypatch.setattr(export, "summarize", lambda run_dir: _summary("new", names=["other"]))
    old = _summary("old", names=["mine"])
    write_summary(RunSummary("old", "t", {}, ENV, [ConfigSummary("eeeeeeeeeeee", *list(vars(old.configs[0])
                                                                                  .values())[1:])]),
                  tmp_path / "baselines" / "t.json")
    check = RegressionCheck(tmp_path / "baselines", update=False, work_dir=tmp_path / "work")
    with pytest.raises(pytest.fail.Exception, match="nothing compared"):
        check(write_suite(), metrics=False)


# --- environment ---------------------------------------------------------------------------------

def test_environment_difference_in_json_text_and_markdown(tmp_path, capsys):
    ray = {"executor": "ray", "actors": 2, "torch_threads": 1, "diffusers": "0.32.0", "git_commit": "bbb"}
    base, cand = _files(tmp_path, _summary("a"), _summary("b", env=ray))
    main(["compare", base, cand, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["environment"]["executor"] == {"base": "local", "candidate": "ray"}
    assert result["environment"]["torch_threads"] == {"base": 2, "candidate": 1}
    assert result["environment"]["actors"] == {"base": None, "candidate": 2}
    assert result["timings_comparable"] is False
    setup = next(w for w in result["warnings"] if w.startswith("environments differ"))
    assert "executor local → ray" in setup and "torch_threads 2 → 1" in setup and "timings not comparable" in setup
    assert any("diffusers 0.31.0 → 0.32.0" in w for w in result["warnings"] if w.startswith("versions differ"))
    assert not any("git_commit" in w for w in result["warnings"])  # a commit is what CI compares

    main(["compare", base, cand])
    text = " ".join(capsys.readouterr().out.split())  # rich wraps long lines at 80 columns
    assert "warning: environments differ: executor local → ray, actors – → 2, torch_threads 2 → 1" in text
    assert "(timings not comparable)" in text
    main(["compare", base, cand, "--markdown"])
    md = capsys.readouterr().out
    assert "> ⚠️ environments differ:" in md and "| torch_threads | 2 | 1 |" in md


def test_same_environment_says_nothing(tmp_path, capsys):
    base, cand = _files(tmp_path, _summary("a"), _summary("b"))
    main(["compare", base, cand, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["environment"] == {} and result["timings_comparable"] is True and result["warnings"] == []


def test_ray_environment_is_the_actors():
    env = {"device": "cpu", "torch_threads": 16, "gpu": None}
    actors = [{"session": 1, "actor": 0, "torch_threads": 4, "gpu": "cpu"},
              {"session": 2, "actor": 0, "torch_threads": 1, "gpu": "cpu"},
              {"session": 2, "actor": 1, "torch_threads": 1, "gpu": "cpu", "died": "killed"},
              {"session": 2, "actor": 2, "torch_threads": 1, "gpu": "cpu"}]
    out = run_environment(env, {"name": "ray", "cpus_per_actor": 1, "share_gpus": False}, actors)
    assert (out["executor"], out["actors"], out["torch_threads"], out["gpu"]) == ("ray", 2, 1, None)
    gpus = [{"session": 1, "torch_threads": 8, "gpu": "NVIDIA H100"}, {"session": 1, "torch_threads": 8, "gpu": "L4"}]
    out = run_environment(env, {"name": "ray", "share_gpus": True}, gpus)
    assert (out["actors"], out["gpu"], out["share_gpus"]) == (2, "L4, NVIDIA H100", True)
    assert run_environment(env, None, None) == {**env, "executor": "local", "actors": None, "share_gpus": False}


def test_old_export_without_executor_facts_is_noted_not_flagged():
    old = {k: v for k, v in ENV.items() if k not in ("executor", "actors", "share_gpus")}
    result = compare(_summary("a", env={"executor": "ray", "actors": 1}), RunSummary("b", "t", {}, old,
                                                                                       _summary("b").configs))
    assert "executor" not in result.environment and "actors" not in result.environment
    assert any("older t2ibench" in n for n in result.notes)


# --- unstable timings ----------------------------------------------------------------------------

def test_instability_on_hand_computed_samples():
    # 19 × 100 ms and one 300: p95 = 100 + 0.05 × 200 = 110 (1.1 × p50); CV = sqrt(2000) / 110 = 40.7 %
    assert instability([100.0] * 19 + [300.0]) == "CV 41%"
    # 10 × 100 and 2 × 200: p95 = 200 (2 × p50); mean 116.7, sd sqrt(16667 / 11) = 38.9, CV 33 %
    assert instability([100.0] * 10 + [200.0] * 2) == "p95/p50 2.00, CV 33%"
    assert instability([100, 101, 99, 100, 102, 98]) == ""
    assert instability([100, 400, 100, 400]) == ""  # too few samples to tell


def test_median_ci_order_statistics():
    assert median_ci(list(range(1, 11))) == (2.0, 9.0)  # the textbook (x_(2), x_(9)) for n = 10
    assert median_ci([5.0, 1.0, 3.0, 2.0, 4.0, 6.0]) == (1.0, 6.0)  # n = 6: the extremes (coverage 96.9 %)
    assert all(math.isnan(v) for v in median_ci([1.0, 2.0, 3.0, 4.0, 5.0]))  # n = 5 cannot reach 95 %
    rng = np.random.default_rng(0)
    hits = sum(lo <= math.log(2) <= hi for lo, hi in (median_ci(rng.exponential(size=40)) for _ in range(2000)))
    assert 0.94 <= hits / 2000 <= 0.99


def test_noise_warning_on_a_noisy_run(tmp_path, capsys):
    base, cand = _files(tmp_path, _summary("a"), _summary("b", noisy=True))
    main(["compare", base, cand, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert set(result["unstable"]["candidate"]) == set(NAMES) and result["unstable"]["base"] == {}
    assert any(w.startswith("unstable timings in the candidate") for w in result["warnings"])
    main(["compare", base, cand])
    text = " ".join(capsys.readouterr().out.split())
    assert "warning: unstable timings in the candidate (p95/p50 > 1.5 or spread CV > 20%)" in text


# --- recommendation ------------------------------------------------------------------------------

def _row(name: str, p50: float, lo: float, hi: float, clip: float) -> dict:
    return {"config": name, "config_id": name, "latency_ms_p50": p50, "latency_ms_p50_ci_low": lo,
            "latency_ms_p50_ci_high": hi, "clip_score": clip}


def test_recommendation_does_not_call_noise_a_win():
    objectives = {"latency_ms_p50": "min", "clip_score": "max"}
    fast, close = _row("fast", 100, 90, 110, 30.0), _row("close", 104, 95, 115, 32.0)
    rec = recommend([fast, close], objectives, {})
    assert rec.config == "close"  # 4 ms faster, inside the noise: the better CLIP score decides
    assert "within the noise of fast" in rec.message and "clip_score" in rec.message
    assert "95% CI 95–115" in rec.message
    apart = _row("apart", 120, 112, 130, 40.0)
    rec = recommend([fast, apart], objectives, {})
    assert rec.config == "fast" and "the lowest latency_ms_p50 (100, 95% CI 90–110)" in rec.message
    alone = recommend([fast, close], {"latency_ms_p50": "min"}, {})
    assert alone.config == "fast" and "point value was kept" in alone.message


# --- 80 columns ----------------------------------------------------------------------------------

def _render(result, width: int, wide: bool = False) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    print_comparison(result, console, wide=wide)
    return console.file.getvalue().splitlines()


def _cells(lines: list[str]) -> list[list[str]]:
    return [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.startswith("│")]


def test_compare_fits_80_columns_without_cutting_a_cell():
    result = compare(_summary("runs/base"), _summary("runs/candidate", scale=1.3, clip=28.0))
    lines = _render(result, 80)
    assert max(map(len, lines)) <= 80
    rows = _cells(lines)
    assert all("…" not in c for row in rows for c in row)
    assert all(len(c) != 1 for row in rows for c in row)  # no cell cut to one letter
    firsts = [row[0] for row in rows]
    assert {"p50 ms", "p95 ms", "mean ms", "img/s", "RSS MB", "clip_score", "fid", "lpips_diversity"} <= set(firsts)
    assert re.sub(r"\s+", "", "".join(firsts)).count(re.sub(r"\s+", "", NAMES[1])) == 1  # folded, never cut
    assert NAMES[2] in firsts  # not read as rich markup
    verdicts = {row[-1] for row in rows if row[-1]}
    assert "regression" in verdicts and verdicts <= {"regression", "improvement", "within gate", "within noise"}
    p50 = next(row for row in rows if row[0] == "p50 ms")
    assert p50[3] == "+30%" and re.fullmatch(r"\[\+\d+, \+\d+\]", p50[4])


def test_wide_shows_every_column(tmp_path, capsys):
    result = compare(_summary("a"), _summary("b", scale=1.3))
    lines = _render(result, 80, wide=True)
    header = next(line for line in lines if line.startswith("┃"))
    assert [h.strip() for h in header.strip("┃").split("┃")] == COLUMNS
    assert all("…" not in c for row in _cells(lines) for c in row)
    narrow = next(line for line in _render(result, 80) if line.startswith("┃"))
    assert "test" not in narrow and "gate" not in narrow
    base, cand = _files(tmp_path, _summary("a"), _summary("b", scale=1.3))
    assert main(["compare", base, cand, "--wide"]) == 1
    assert "bootstrap ratio (24 vs 24 samples)" in capsys.readouterr().out
    md = render_markdown(result, wide=True)
    assert "| " + " | ".join(COLUMNS) + " |" in md
    assert "| config | figure | base | candidate | change | CI | verdict |" in render_markdown(result)
