"""Soak: a 10,000-cell sweep on ``random:tiny-sd`` at 32², 1 step (a benchmark, not a test).

One config (euler, guidance 1: no CFG, so the harness's share of each call is as large as it gets)
× 100 prompts × 100 seeds. The first and the last thousand cells run the same config, so their rates
compare like with like. It checks that
- cells per second stay flat: the last thousand cells run at least 0.8× the rate of the first thousand
  (on a quiet machine: on a shared one the rate follows the others' load, so it also reports the
  harness's own time per cell, between one call's end and the next call's start, which must stay flat);
- process memory stays flat: RSS grows by less than 100 MB from cell 1,000 to the last;
- a resume of the finished run finds nothing to do (every image's sha256 re-checked) in under 2 s.
Run: ``python -m pytest benchmarks/test_bench_soak.py -s``; ``T2IBENCH_SOAK_CELLS=1000`` for a short
version (a multiple of 100). It prints a markdown table for ``benchmarks/results/`` (also written to
the file named by ``T2IBENCH_SOAK_WRITE``) before it checks the figures.
"""

from __future__ import annotations

import os
import statistics
import time

import yaml

CELLS = int(os.environ.get("T2IBENCH_SOAK_CELLS", "10000"))
N_PROMPTS = 100
WINDOW = min(1000, CELLS // 5)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Probe:
    """An Observer recording, after each call, the time, the cells done so far and the process RSS."""

    def __init__(self):
        self.samples: list[tuple[float, int, float]] = []
        self.done = 0

    def run_started(self, n_cells): pass

    def config_started(self, config, n_cells): pass

    def config_ended(self, config, status, reason): pass

    def cells_advanced(self, config, n, timed=True):
        self.done += n
        self.samples.append((time.perf_counter(), self.done, _rss_mb()))


def _rate(samples, start: int, stop: int) -> float:
    """Cells per second between the sample where ``start`` cells were done and the one at ``stop``."""
    t = {done: when for when, done, _ in samples}
    return (stop - start) / (t[stop] - t[start])


def test_soak_10k_cells(tmp_path):
    from t2ibench.orchestration import execute
    from t2ibench.store import RunStore
    from t2ibench.suites import load_suite

    assert CELLS % N_PROMPTS == 0
    seeds = CELLS // N_PROMPTS
    suite = {"name": "soak", "model": "random:tiny-sd",
             "prompts": [f"a photo of object number {i} on a table" for i in range(N_PROMPTS)],
             "seeds": {"count": seeds, "start": 0},
             "defaults": {"steps": 1, "width": 32, "height": 32, "guidance_scale": 1.0, "scheduler": "euler"},
             "timing": {"warmup": 1, "repeats": 1}}
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "run"

    probe = Probe()
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    execute(load_suite(path), out=out, device="cpu", metrics=False, observer=probe)
    total_s = time.perf_counter() - t0
    load_end = os.getloadavg()[0]
    with RunStore.open(out) as store:
        generation_s = store.get_meta("generation_s")
        cells = sorted(store.cells(), key=lambda c: c["call_index"])
    assert len(cells) == CELLS and {c["status"] for c in cells} == {"ok"}
    # the harness's own time per cell: the wall time between two calls' ends less the second call's latency
    overhead_ms = [1000 * (b[0] - a[0]) - c["latency_ms"] for a, b, c in zip(probe.samples, probe.samples[1:], cells[1:])]
    first_overhead = statistics.median(overhead_ms[:WINDOW])
    last_overhead = statistics.median(overhead_ms[-WINDOW:])

    first = _rate(probe.samples, probe.samples[0][1], WINDOW)  # from the first call's end to cell 1,000
    second = _rate(probe.samples, WINDOW, 2 * WINDOW)
    last = _rate(probe.samples, CELLS - WINDOW, CELLS)
    rss = {done: mb for _, done, mb in probe.samples}
    rss_growth = rss[CELLS] - rss[WINDOW]

    planned: list[float] = []
    t1 = time.perf_counter()
    execute(load_suite(path), out=out, device="cpu", metrics=False,
            log=lambda msg: planned.append(time.perf_counter() - t1) if "cells to generate" in msg else None)
    resume_total_s = time.perf_counter() - t1
    resume_plan_s = planned[0]

    table = (f"| figure | value |\n|---|---:|\n"
             f"| cells | {CELLS:,} (1 config × {N_PROMPTS} prompts × {seeds} seeds) |\n"
             f"| run wall time (load, generation, reports) | {total_s:.1f} s |\n"
             f"| generation time | {generation_s:.1f} s |\n"
             f"| cells/s, cells 1–{WINDOW} | {first:.2f} |\n"
             f"| cells/s, cells {WINDOW}–{2 * WINDOW} | {second:.2f} |\n"
             f"| cells/s, last {WINDOW} cells | {last:.2f} |\n"
             f"| ratio last ÷ first {WINDOW} | {last / first:.3f} |\n"
             f"| harness ms per cell (wall between calls − call latency), median, first / last {WINDOW} | "
             f"{first_overhead:.2f} / {last_overhead:.2f} |\n"
             f"| RSS at cell {WINDOW} / at the end | {rss[WINDOW]:.0f} MB / {rss[CELLS]:.0f} MB |\n"
             f"| RSS growth cell {WINDOW} → end | {rss_growth:+.1f} MB |\n"
             f"| resume: plan (every sha256 re-checked), nothing to do | {resume_plan_s:.2f} s |\n"
             f"| resume: whole command (reports rewritten) | {resume_total_s:.1f} s |\n"
             f"| load average (1 min), start / end of the sweep, {os.cpu_count()} CPUs | "
             f"{load_start:.1f} / {load_end:.1f} |\n")
    print("\n" + table)
    if os.environ.get("T2IBENCH_SOAK_WRITE"):
        with open(os.environ["T2IBENCH_SOAK_WRITE"], "w") as f:
            f.write(table)
    assert last_overhead <= 1.5 * first_overhead + 0.5
    assert last / first >= 0.8
    assert rss_growth < 100
    assert resume_plan_s < 2.0
