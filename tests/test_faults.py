"""Faults: Ctrl-C, SIGKILL, a full disk, stale and live locks, failing calls; and the harness mutation audit.

Signals are sent in subprocesses. A driver script patches one point of the harness to signal its own
process there (during a call, between configs, inside an image write), so each case is exact.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import t2ibench
from t2ibench.cli import main
from t2ibench.errors import RunLockedError
from t2ibench.store import RunStore, file_sha256

SUITE = {
    "name": "faults", "model": "random:tiny-sd", "prompts": ["a red cube on a table", "a lighthouse at dusk"],
    "seeds": [0, 1], "defaults": {"steps": 1, "width": 32, "height": 32},
    "matrix": {"scheduler": ["euler", "ddim"]}, "timing": {"warmup": 0, "repeats": 1},
}
TOTAL = 8  # 2 configs × 2 prompts × 2 seeds, one call per cell


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "faults.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    return path


COMMIT_CHECKS: list[str] = []  # the images the reference run found complete when their rows committed


@pytest.fixture(scope="module")
def reference(suite_path, tmp_path_factory) -> Path:
    """An uninterrupted run of the suite: the images every interrupted and resumed run must equal.

    It also checks, as each row commits, that the row's image is on disk with the sha256 the row records.
    """
    real = RunStore.put_cells

    def put_cells(self, rows, call=None):
        rows = list(rows)
        for row in rows:
            if row.status == "ok":
                assert row.image_sha256 and file_sha256(self.run_dir / row.image_path) == row.image_sha256
                COMMIT_CHECKS.append(row.image_path)
        return real(self, rows, call)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunStore, "put_cells", put_cells)
        out = tmp_path_factory.mktemp("ref") / "run"
        return t2ibench.run(suite_path, out=out, device="cpu", metrics=False).run_dir


def _pngs(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in (run_dir / "images").rglob("*.png")}


def _cells(run_dir: Path) -> list[dict]:
    with RunStore.open(run_dir) as store:
        return store.cells()


def _committed(run_dir: Path) -> dict[tuple, float]:
    """The ok cells, each with its commit time; every one points to its complete image."""
    rows = [c for c in _cells(run_dir) if c["status"] == "ok"]
    for r in rows:
        assert file_sha256(run_dir / r["image_path"]) == r["image_sha256"], r["image_path"]
    return {(r["config_id"], r["prompt_id"], r["seed"]): r["created_at"] for r in rows}


def _assert_resumed_like_reference(run_dir: Path, reference: Path, kept: dict[tuple, float]) -> None:
    cells = _cells(run_dir)
    keys = [(c["config_id"], c["prompt_id"], c["seed"]) for c in cells]
    assert len(keys) == len(set(keys)) == TOTAL and {c["status"] for c in cells} == {"ok"}
    assert {k: v for k, v in _committed(run_dir).items() if k in kept} == kept  # finished cells not redone
    assert _pngs(run_dir) == _pngs(reference)  # byte-identical, and no image without its row
    assert not list(run_dir.rglob("*.tmp"))
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


DRIVER = """\
import os, signal, sys
from t2ibench.harness import recorder
from t2ibench.backends.torch.engine import TorchModel
count = {"calls": 0, "images": 0, "configs": 0}
def hit(n, key):
    count[key] += 1
    return count[key] == n
def kill(sig=signal.SIGINT):
    os.kill(os.getpid(), sig)
HOOK
from t2ibench.cli import main
sys.exit(main(sys.argv[1:]))
"""

HOOKS = {
    "sigint during call 3": """
real = TorchModel.generate
def generate(self, *args):
    if hit(3, "calls"):
        kill()
    return real(self, *args)
TorchModel.generate = generate
""",
    "sigint between configs": """
real = recorder.StoreRecorder.config_ended
def config_ended(self, *args):
    real(self, *args)
    if hit(1, "configs"):
        kill()
recorder.StoreRecorder.config_ended = config_ended
""",
    "second sigint after image 3 is written": """
real = recorder.write_png_atomic
def write(path, pixels):
    sha = real(path, pixels)
    if hit(3, "images"):
        kill()
        kill()  # before this image's row commits
    return sha
recorder.write_png_atomic = write
""",
    "sigkill after image 3 is written": """
real = recorder.write_png_atomic
def write(path, pixels):
    sha = real(path, pixels)
    if hit(3, "images"):
        kill(signal.SIGKILL)
    return sha
recorder.write_png_atomic = write
""",
}


def _drive(hook: str, suite_path: Path, out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.replace("HOOK", HOOKS[hook]))
    return subprocess.run([sys.executable, str(driver), "run", str(suite_path), "--out", str(out), "--device", "cpu",
                           "--no-metrics"], capture_output=True, text=True, timeout=600)


def _resume_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "to resume, run:" in line]
    assert len(lines) == 1, stderr
    return lines[0]


# -- Ctrl-C ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hook, saved", [("sigint during call 3", 3), ("sigint between configs", 4)])
def test_first_sigint_stops_after_the_current_call(hook, saved, suite_path, reference, tmp_path):
    out = tmp_path / "run"
    proc = _drive(hook, suite_path, out, tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "stopping after the current call" in proc.stderr
    line = _resume_line(proc.stderr)
    assert f"{saved} of {TOTAL} cells are saved" in line
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    kept = _committed(out)
    assert len(kept) == saved  # the call under way when Ctrl-C came was finished and committed
    with open(out / "cells.csv") as f:  # the reports of what is done
        assert len(list(csv.DictReader(f))) == saved
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    with RunStore.open(out) as store:
        statuses = {c["name"]: c["status"] for c in store.configs()}
    assert statuses == ({"scheduler=euler": "interrupted", "scheduler=ddim": "pending"} if saved == 3
                        else {"scheduler=euler": "done", "scheduler=ddim": "pending"})

    command = shlex.split(line.split("to resume, run: ", 1)[1])  # the printed command resumes the run
    assert command[:2] == ["t2ibench", "run"] and "--fresh" not in command
    assert main(command[1:]) == 0
    _assert_resumed_like_reference(out, reference, kept)


def test_second_sigint_stops_at_once_and_loses_no_committed_cell(suite_path, reference, tmp_path):
    """Both Ctrl-Cs come after the third image is written, before its row commits: the first would have
    finished the call and committed it (3 cells); the second stops at once (2 cells)."""
    out = tmp_path / "run"
    proc = _drive("second sigint after image 3 is written", suite_path, out, tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"2 of {TOTAL} cells are saved" in _resume_line(proc.stderr)
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    kept = _committed(out)  # the third image may be on disk, but no row records it
    assert len(kept) == 2
    assert main(["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    _assert_resumed_like_reference(out, reference, kept)


def test_external_sigint_through_the_cli(write_suite, reference, tmp_path):
    """A real Ctrl-C from outside, at whatever call is under way, on the installed entry point."""
    path = write_suite(**{**SUITE, "seeds": [0, 1, 2]})
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "t2ibench", "run", str(path), "--out", str(out), "--device", "cpu",
                             "--no-metrics"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while _ok_count(out) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    command = shlex.split(_resume_line(stderr).split("to resume, run: ", 1)[1])
    kept = _committed(out)
    assert 2 <= len(kept) < 12
    assert main(command[1:]) == 0
    cells = _cells(out)
    assert len(cells) == 12 and {c["status"] for c in cells} == {"ok"}
    assert {k: v for k, v in _committed(out).items() if k in kept} == kept
    ref = _pngs(reference)
    assert {k: v for k, v in _pngs(out).items() if k in ref} == ref  # seeds 0 and 1 equal the reference


def _ok_count(run_dir: Path) -> int:
    try:
        with sqlite3.connect(run_dir / "run.sqlite", timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM cells WHERE status='ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


# -- SIGKILL ---------------------------------------------------------------------------------------
def test_sigkill_then_resume_takes_over_the_lock_and_completes(suite_path, reference, tmp_path, capsys):
    """Killed after an image is written and before its row commits; a kill during a write leaves a
    partial temporary file, which the resumed run removes."""
    out = tmp_path / "run"
    proc = _drive("sigkill after image 3 is written", suite_path, out, tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    kept = _committed(out)
    assert len(kept) == 2
    assert (out / "run.lock").read_text().split()[0].isdigit()  # the killed run's lock names it
    next(out.glob("images/*/")).joinpath(".p0-7.png.4242.tmp").write_bytes(b"\x89PNG\r\n\x1a\n half an image")
    capsys.readouterr()
    assert main(["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    err = capsys.readouterr().err
    assert "took over the lock" in err and "no longer holds it" in err
    _assert_resumed_like_reference(out, reference, kept)
    assert (out / "run.lock").read_text() == ""  # a clean exit leaves an empty lock file


# -- a full disk -----------------------------------------------------------------------------------
def _half_writes(target: str, nth: int):
    """An ``open`` that, from the ``nth`` binary write-mode open of a path containing ``target`` on, writes
    half of what it is given and fails with ENOSPC, as a filling disk does."""
    real_open = io.open
    opened = [0]

    class Filling(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and target in str(file) and "b" in mode and ("w" in mode or "+" in mode):
            opened[0] += 1
            if opened[0] >= nth:
                return Filling(file, "w")
        return real_open(file, mode, *args, **kwargs)

    return fake_open


def _disk_full_line(err: str, where: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("t2ibench: error:")]
    assert len(lines) == 1 and "the disk is full" in lines[0] and where in lines[0], err
    assert "Traceback" not in err


def test_enospc_writing_an_image_leaves_no_partial_file(suite_path, reference, tmp_path, monkeypatch, capsys):
    """Also the mutation check for a non-atomic image write: the failed image must not exist, truncated."""
    import builtins

    out = tmp_path / "run"
    fake = _half_writes(str(out / "images"), nth=3)
    monkeypatch.setattr(builtins, "open", fake)
    monkeypatch.setattr(io, "open", fake)
    assert main(["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 1
    _disk_full_line(capsys.readouterr().err, str(out / "images"))
    kept = _committed(out)
    assert len(kept) == 2
    pngs = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png")}
    assert pngs == {c["image_path"] for c in _cells(out) if c["status"] == "ok"}  # nothing truncated on disk
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert main(["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    _assert_resumed_like_reference(out, reference, kept)


@pytest.mark.parametrize("where", ["store", "report"])
def test_enospc_in_the_store_or_a_report_is_one_line_and_exit_1(where, suite_path, reference, tmp_path, monkeypatch,
                                                                capsys):
    import t2ibench.reports

    out = tmp_path / "run"
    if where == "store":
        real, calls = RunStore.put_cells, []

        def put_cells(self, rows, call=None):
            calls.append(1)
            if len(calls) == 3:
                raise sqlite3.OperationalError("database or disk is full")
            return real(self, rows, call)

        monkeypatch.setattr(RunStore, "put_cells", put_cells)
        path, saved = out / "run.sqlite", 2
    else:
        def write_reports(store, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(store.run_dir / "report.html"))

        monkeypatch.setattr(t2ibench.reports, "write_reports", write_reports)
        path, saved = out / "report.html", TOTAL
    assert main(["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 1
    _disk_full_line(capsys.readouterr().err, str(path))
    kept = _committed(out)
    assert len(kept) == saved
    monkeypatch.undo()
    assert main(["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    _assert_resumed_like_reference(out, reference, kept)


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs (root only); yields (mount point, grow), where grow() gives it room."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)

    try:
        yield disk, grow
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_really_full_disk_then_the_same_command_completes(write_suite, small_disk, reference, tmp_path, capsys):
    disk, grow = small_disk
    path = write_suite(**{**SUITE, "seeds": list(range(6))})  # 24 images, their rows, the WAL: over 300 KiB
    out = disk / "run"
    args = ["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]
    assert main(args) == 1
    _disk_full_line(capsys.readouterr().err, str(disk))
    kept = _committed(out)  # no row points to a truncated image
    assert len(kept) < 24
    grow()
    assert main(args) == 0
    cells = _cells(out)
    assert len(cells) == 24 and {c["status"] for c in cells} == {"ok"}
    assert {k: v for k, v in _committed(out).items() if k in kept} == kept
    ref = _pngs(reference)
    assert {k: v for k, v in _pngs(out).items() if k in ref} == ref
    assert len(_pngs(out)) == 24 and not list(out.rglob("*.tmp"))


def test_an_image_whose_bytes_changed_is_regenerated(suite_path, reference, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    cells = _cells(out)
    victim = out / cells[1]["image_path"]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated, as a disk that filled during a copy leaves it
    kept = {k: v for k, v in _committed_unchecked(out).items() if k != (cells[1]["config_id"], cells[1]["prompt_id"],
                                                                        cells[1]["seed"])}
    t2ibench.run(suite_path, out=out, device="cpu", metrics=False)
    _assert_resumed_like_reference(out, reference, kept)


def _committed_unchecked(run_dir: Path) -> dict[tuple, float]:
    return {(c["config_id"], c["prompt_id"], c["seed"]): c["created_at"] for c in _cells(run_dir)}


# -- locks -----------------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pid = _dead_pid()
    (run_dir / "run.lock").write_text(f"{pid} {socket.gethostname()}\n")
    with RunStore.open(run_dir, write=True) as store:
        assert f"left by pid {pid}," in store.lock_note and "no longer holds it" in store.lock_note
        assert (run_dir / "run.lock").read_text().split() == [str(os.getpid()), socket.gethostname()]
    with RunStore.open(run_dir, write=True) as store:  # a clean close leaves nothing to take over
        assert store.lock_note == ""


def test_lock_copied_from_another_machine_is_taken_over_with_a_note(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.lock").write_text("4242 gpu-node-17\n")
    with RunStore.open(run_dir, write=True) as store:
        assert "pid 4242 on host 'gpu-node-17'" in store.lock_note


def test_held_lock_naming_a_dead_process_is_replaced(tmp_path):
    """A child that inherited the lock's descriptor keeps the flock after its parent died."""
    import fcntl

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pid = _dead_pid()
    leftover = os.open(run_dir / "run.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(leftover, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(leftover, f"{pid} {socket.gethostname()}".encode())
        with RunStore.open(run_dir, write=True) as store:
            assert f"from pid {pid}, which no longer exists" in store.lock_note
            with pytest.raises(RunLockedError, match=f"pid {os.getpid()}\\)"):  # and now it is ours, live
                RunStore.open(run_dir, write=True)
    finally:
        os.close(leftover)


def test_live_lock_of_another_process_is_a_clear_error(write_suite, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from t2ibench.store import RunStore; "
         "s = RunStore.open(sys.argv[1], write=True); print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", str(write_suite()), "--out", str(out), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert f"in use by another t2ibench process (pid {holder.pid})" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()


def test_live_lock_held_from_another_host_is_not_taken_over(tmp_path):
    import fcntl

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    fd = os.open(run_dir / "run.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as an NFS lock held by a run on another machine
        os.write(fd, b"4242 gpu-node-17")
        with pytest.raises(RunLockedError, match="pid 4242 on host 'gpu-node-17'"):
            RunStore.open(run_dir, write=True)
    finally:
        os.close(fd)


# -- failures inside a run -------------------------------------------------------------------------
def test_cuda_oom_is_recorded_memory_freed_and_the_sweep_goes_on(suite_path, tmp_path, monkeypatch, capsys):
    import torch

    from t2ibench.backends.torch.engine import TorchModel

    real, calls, freed = TorchModel.generate, [], []
    allocations: list[weakref.ref] = []

    def generate(self, prompts, seeds, knobs):
        calls.append(knobs.scheduler)
        if knobs.scheduler == "ddim" and calls.count("ddim") in (1, 3):  # two failures, never consecutive
            activations = torch.empty(1 << 20)  # held by this frame, so by the traceback
            allocations.append(weakref.ref(activations))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, prompts, seeds, knobs)

    real_recover = TorchModel.recover

    def recover(self):
        freed.append(allocations[-1]() is None)  # the failed call's tensors are unreachable when memory is freed
        real_recover(self)

    monkeypatch.setattr(TorchModel, "generate", generate)
    monkeypatch.setattr(TorchModel, "recover", recover)
    out = tmp_path / "run"
    assert main(["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 1
    assert freed == [True, True]
    cells = _cells(out)
    failed = [c for c in cells if c["status"] == "failed"]
    assert len(failed) == 2 and all(c["error"].startswith("OutOfMemoryError: CUDA out of memory") for c in failed)
    assert sum(c["status"] == "ok" for c in cells) == TOTAL - 2  # the rest of ddim, and euler, ran
    err = capsys.readouterr().err
    assert "failed: scheduler=ddim" in err and "2 of 4 cells failed, OutOfMemoryError: CUDA out of memory" in err


@pytest.mark.parametrize("limit", [None, 2])
def test_consecutive_failures_skip_the_rest_of_a_config(limit, write_suite, tmp_path, monkeypatch, fail_scheduler,
                                                        capsys):
    fail_scheduler("ddim", "simulated driver failure")
    timing = {**SUITE["timing"], **({"max_consecutive_failures": limit} if limit else {})}
    path = write_suite(**{**SUITE, "prompts": SUITE["prompts"][:1], "seeds": [0, 1, 2, 3], "timing": timing,
                          "matrix": {"scheduler": ["ddim", "euler"]}})  # 4 calls per config, ddim first
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 1
    n = limit or 3  # the default
    ddim = [c for c in _cells(out) if c["config_id"] == t2ibench.load_suite(path).configs()[0].config_id]
    assert sorted(c["status"] for c in ddim) == ["failed"] * n + ["skipped"] * (4 - n)
    reason = f"skipped after {n} consecutive failed calls (last: RuntimeError: simulated driver failure)"
    assert {c["error"] for c in ddim if c["status"] == "skipped"} == {reason}
    results = t2ibench.open_run(out).results().set_index("config")
    assert results.loc["scheduler=ddim", "status"] == "skipped" and results.loc["scheduler=ddim", "reason"] == reason
    assert results.loc["scheduler=euler", "n_ok"] == 4  # the sweep went on
    err = " ".join(capsys.readouterr().err.split())
    assert "failed: scheduler=ddim" in err and f"{n} of 4 cells failed" in err and reason in err
    if limit is None:
        return
    monkeypatch.undo()  # the skipped and failed cells are retried on resume
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", "--no-metrics"]) == 0
    assert {c["status"] for c in _cells(out)} == {"ok"}


def test_max_consecutive_failures_is_validated():
    from pydantic import ValidationError

    from t2ibench.suites import Timing

    assert Timing().max_consecutive_failures == 3
    with pytest.raises(ValidationError):
        Timing(max_consecutive_failures=0)


# -- mutation audit: each test fails if its bug is planted ----------------------------------------
def test_peak_memory_is_reset_before_each_config(write_suite, tmp_path, monkeypatch):
    """Mutation: peak memory not reset between configs. A fake tracker whose peak is the largest image
    area drawn since its last reset: each config must report its own area, not a larger earlier one's."""
    from t2ibench.backends.memory import MemoryTracker
    from t2ibench.backends.torch.engine import TorchModel

    monkeypatch.setattr(MemoryTracker, "reset", lambda self: setattr(self, "fake_peak", 0))
    monkeypatch.setattr(MemoryTracker, "peak_rss_mb", lambda self: float(self.fake_peak))
    real = TorchModel._call

    def call(self, prompts, seeds, knobs):
        self.memory.fake_peak = max(getattr(self.memory, "fake_peak", 0), knobs.width * knobs.height)
        return real(self, prompts, seeds, knobs)

    monkeypatch.setattr(TorchModel, "_call", call)
    path = write_suite(**{**SUITE, "matrix": {"width": [64, 32, 48]}, "prompts": SUITE["prompts"][:1], "seeds": [0]})
    results = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False).results()
    assert dict(zip(results["width"], results["peak_rss_mb"])) == {64: 64 * 32, 32: 32 * 32, 48: 48 * 32}


def test_image_at_batch_2_equals_the_image_at_batch_1(write_suite, tmp_path):
    """Mutation: one noise generator for a whole batch. Image (p, s) must not depend on its batch-mates."""
    path = write_suite(**{**SUITE, "defaults": {"steps": 2, "width": 32, "height": 32}, "prompts": SUITE["prompts"][:1],
                          "matrix": {"batch_size": [1, 2], "scheduler": ["euler", "euler_a"]}})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu", metrics=False)
    cells = run.cells()
    pixels = {(r.config, r.prompt_id, r.seed): np.asarray(Image.open(run.run_dir / r.image_path)).astype(int)
              for r in cells.itertuples()}
    for (config, prompt_id, seed), image in pixels.items():
        if config.startswith("batch_size=2"):
            alone = pixels[(config.replace("batch_size=2", "batch_size=1"), prompt_id, seed)]
            assert np.abs(image - alone).max() <= 1, (config, prompt_id, seed)
            other = pixels[(config, prompt_id, 1 - seed)]
            assert np.abs(image - other).max() > 20  # seeds give visibly different images


def test_every_row_commits_after_its_complete_image(reference):
    """Mutation: the row committed before its image is written. The reference run checked each commit."""
    assert sorted(COMMIT_CHECKS) == sorted(c["image_path"] for c in _cells(reference))
    assert len(COMMIT_CHECKS) == TOTAL


def test_run_with_baseline_exits_1_when_cells_failed(suite_path, tmp_path, fail_scheduler):
    """Mutation: ``run --baseline`` exiting 0 when cells failed. The baseline is the same run, so the
    comparison itself finds no regression: only the failed cells can make the exit code 1."""
    fail_scheduler("ddim", "simulated driver failure")
    out = tmp_path / "run"
    args = ["run", str(suite_path), "--out", str(out), "--device", "cpu", "--no-metrics"]
    assert main(args) == 1
    from t2ibench.reports.compare import compare
    from t2ibench.reports.export import load_summary, summarize

    assert not compare(load_summary(str(out)), summarize(out)).regressions
    assert main([*args, "--baseline", str(out)]) == 1


def test_p95_needs_20_samples_a_side():
    """Mutation: p95 tested with fewer than 20 samples. 19 a side is not tested; 20 a side is."""
    from t2ibench.reports.compare import MIN_SAMPLES_P95, Gate, latency_row
    from t2ibench.reports.export import ConfigSummary

    assert MIN_SAMPLES_P95 == 20

    def summary(samples):
        return ConfigSummary("c", "c", "m", {}, "done", {}, list(samples), {})

    rng = np.random.default_rng(0)
    for n, tested in ((19, False), (20, True)):
        base, cand = 100 + rng.normal(0, 1, n), 300 + rng.normal(0, 1, n)  # p95 tripled: unmistakable if tested
        row = latency_row("c", "c", "latency_ms_p95", summary(base), summary(cand), Gate(0.1, True))
        assert (row.ci is not None) == tested and row.significant == tested, (n, row.test)
        assert ("too few samples" in row.test) == (not tested)
