"""``endpoint: self``: t2ibench serves a config itself, in a subprocess, for the load generator to call.

The server is ``python -m t2ibench.serving`` (the same code as ``t2ibench serve``) started in its own session
(so a terminal's Ctrl-C reaches only the driver, which then stops it) with ``PR_SET_PDEATHSIG`` set, so that
the kernel sends it SIGTERM if the driver dies, even by SIGKILL. :class:`SelfServer` is a context manager: the
server is stopped (SIGTERM, which drains; SIGKILL after a grace period) when the block ends, however it ends.
The load generator therefore never shares a process with the engine, and no server outlives its run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from t2ibench.errors import UserError
from t2ibench.harness.interrupt import check_stop
from t2ibench.suites import Config, Timing

STARTUP_TIMEOUT_S = 3600.0  # a large model's load, export and compile can take this long; Ctrl-C still stops it
STOP_GRACE_S = 30.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the server's own parent watch still stops it
        pass


class SelfServer:
    """One config served by a subprocess on 127.0.0.1 and a free port; ``url`` once started."""

    def __init__(self, config: Config, *, device: str, timing: Timing, trust_remote_code: bool = False,
                 serve_options: dict | None = None, log: Callable[[str], None] = lambda msg: None):
        self.config = config
        self.device = device
        self.timing = timing
        self.trust_remote_code = trust_remote_code
        self.serve_options = dict(serve_options or {})
        self.log = log
        self.url = ""
        self.process: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> "SelfServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def log_path(self) -> Path:
        return Path(self._dir.name) / "server.log"

    def start(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="t2ibench-serve-")
        folder = Path(self._dir.name)
        spec = {"model": self.config.model, "name": self.config.name, "knobs": self.config.knobs.model_dump(mode="json"),
                "timing": self.timing.model_dump(mode="json"), "trust_remote_code": self.trust_remote_code,
                "serve": {"host": "127.0.0.1", "port": 0, **self.serve_options}}
        (folder / "config.json").write_text(json.dumps(spec))
        port_file = folder / "port"
        command = [sys.executable, "-m", "t2ibench.serving", "--config-json", str(folder / "config.json"),
                   "--port-file", str(port_file), "--device", self.device, "--parent-pid", str(os.getpid())]
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not port_file.is_file():
            code = self.process.poll()
            if code is not None:
                raise ServerFailed(f"the server for config '{self.config.name}' exited with code {code} before it "
                                   f"was ready: {self.tail()}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"the server for config '{self.config.name}' was not ready after "
                                   f"{STARTUP_TIMEOUT_S:.0f} s: {self.tail()}")
            check_stop()  # Ctrl-C while a model loads: the finally of the caller stops the server
            time.sleep(0.05)
        port = int(port_file.read_text().strip())
        self.url = f"http://127.0.0.1:{port}"

    def tail(self, n: int = 5) -> str:
        """The server log's last lines (why it failed), on one line."""
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "(no log)"
        return " | ".join(lines[-n:])[-800:] or "(empty log)"

    def stop(self) -> int | None:
        """SIGTERM (the server drains its queue and exits 0), SIGKILL after a grace period; the exit code."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    process.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            code = process.returncode
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        return code


class ServerFailed(RuntimeError):
    """The self-served endpoint could not start: its config fails (the group's configs are recorded failed)."""


def check_serving_installed() -> None:
    """A load scenario needs the [serve] extra; a UserError naming it otherwise."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "aiohttp", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"load scenarios need {', '.join(missing)}: pip install 't2ibench[serve]'")
