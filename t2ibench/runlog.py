"""``run.log``: what other packages print during a run goes to the run directory, not the terminal.

Covered: Python warnings from modules outside t2ibench, log records of other packages that a handler
would write to stderr or stdout (torch's, diffusers', transformers', Ray's own, or logging's last resort), and,
when this process's stderr is file descriptor 2, raw writes to fd 2 by C extensions and the processes
started meanwhile (bitsandbytes notices, Ray's raylet). t2ibench's own messages, progress bars and
tqdm bars still reach the terminal: they write to ``sys.stderr``, which then points at a duplicate of
the original fd 2. What arrives before the run directory exists is held in memory and written to
``run.log`` by :meth:`ThirdPartyLog.attach`. ``verbose`` shows everything on the terminal as well.
"""

from __future__ import annotations

import codecs
import logging
import os
import sys
import threading
import warnings
from pathlib import Path

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
MAX_BUFFERED = 20_000  # chunks held before the run directory exists; later ones are dropped
_ORIGINAL_HANDLE = logging.Handler.handle
_MARK = "_t2ibench_run_log"  # set on a record once it is in run.log
_active: "ThirdPartyLog | None" = None


def _ours(filename: str) -> bool:
    return os.path.abspath(filename).startswith(PACKAGE_DIR)


def _handle(handler: logging.Handler, record: logging.LogRecord):
    """Handler.handle while a ThirdPartyLog is active: another package's record bound for the terminal
    (through its own stream handler, torch's stderr handler or logging's last resort) goes to run.log."""
    log = _active
    if log is None or _own(record) or not log.to_terminal(handler):
        return _ORIGINAL_HANDLE(handler, record)
    rv = handler.filter(record)
    if not rv:
        return rv
    if isinstance(rv, logging.LogRecord):
        record = rv
    if not getattr(record, _MARK, False):  # not yet written by the root handler
        try:
            text = handler.format(record)
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is logging's to report
            handler.handleError(record)
            return rv
        setattr(record, _MARK, True)
        log.write(text + "\n", echo=True)
    return rv


def _own(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] == "t2ibench"


class _RootHandler(logging.Handler):
    """On the root logger: records of other packages that propagate (where logging's last resort would
    print them), written once even when another handler sees them too."""

    def __init__(self, log: "ThirdPartyLog"):
        super().__init__()
        self.log = log
        self.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if _own(record) or getattr(record, _MARK, False):
            return
        setattr(record, _MARK, True)
        self.log.write(self.format(record) + "\n", echo=True)


class ThirdPartyLog:
    """A context manager (one at a time): while it is active, other packages' output goes to ``run.log``."""

    def __init__(self, verbose: bool = False, capture_fd: bool = True):
        self.verbose = verbose
        self.capture_fd = capture_fd
        self.path: Path | None = None
        self._lock = threading.RLock()
        self._buffer: list[str] = []
        self._file = None
        self._saved_fd: int | None = None  # the original fd 2, while fd 2 is a pipe into this log
        self._terminal = None  # sys.stderr meanwhile: a text stream on the original fd 2
        self._stderr = None
        self._pump: threading.Thread | None = None
        self._showwarning = None
        self._root = _RootHandler(self)

    # -- writing -------------------------------------------------------------------------------
    def write(self, text: str, echo: bool = False) -> None:
        """Append to run.log (or the buffer); with ``echo`` and ``verbose``, to the terminal as well."""
        with self._lock:
            if self._file is not None:
                self._file.write(text)
                self._file.flush()
            elif len(self._buffer) < MAX_BUFFERED:
                self._buffer.append(text)
        if echo and self.verbose:
            self._echo(text)

    def _echo(self, text: str) -> None:
        if _active is self:
            stream = sys.stderr  # ours (or the progress display's proxy of it): never fd 2 itself
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass

    def attach(self, run_dir: str | Path) -> None:
        """From now on write ``run_dir/run.log`` (appended to on a resumed run), after what was buffered."""
        with self._lock:
            if self._file is not None:
                return
            self.path = Path(run_dir) / "run.log"
            self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace")
            self._file.write("".join(self._buffer))
            self._file.flush()
            self._buffer.clear()

    def text(self) -> str:
        """What was captured and not yet written to a file (tests, and a run that never got a directory)."""
        with self._lock:
            return "".join(self._buffer)

    def to_terminal(self, handler: logging.Handler) -> bool:
        """Whether ``handler`` writes to the terminal: a stream that is stderr or stdout, not a file."""
        stream = getattr(handler, "stream", None)
        if stream is None or isinstance(handler, logging.FileHandler):
            return False
        if any(stream is s for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__, self._terminal,
                                     self._stderr) if s is not None):
            return True
        try:
            return stream.fileno() in (1, 2, self._saved_fd)
        except (AttributeError, OSError, ValueError):
            return False

    # -- warnings ------------------------------------------------------------------------------
    def _warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        if _ours(filename) or file is not None:
            self._showwarning(message, category, filename, lineno, file, line)
            return
        self.write(warnings.formatwarning(message, category, filename, lineno, line), echo=True)

    # -- fd 2 --------------------------------------------------------------------------------
    def _start_fd_capture(self) -> None:
        """fd 2 becomes a pipe read into this log; sys.stderr a stream on a duplicate of the original fd 2."""
        try:
            if sys.stderr is None or sys.stderr.fileno() != 2:
                return  # not the process's stderr (a test's capture): Python-level capture only
        except (AttributeError, OSError, ValueError):
            return
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        self._saved_fd = os.dup(2)
        self._terminal = open(self._saved_fd, "w", buffering=1, encoding=sys.stderr.encoding,
                              errors="backslashreplace", closefd=False)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._stderr, sys.stderr = sys.stderr, self._terminal
        self._pump = threading.Thread(target=self._read_pipe, args=(read_fd,), name="t2ibench-runlog", daemon=True)
        self._pump.start()

    def _read_pipe(self, read_fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")  # a character may span reads
        with open(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                self.write(decoder.decode(chunk), echo=True)

    def _stop_fd_capture(self) -> None:
        if self._pump is None:
            if self._saved_fd is not None:  # failed half-way: fd 2 was never replaced
                os.close(self._saved_fd)
                self._saved_fd = None
            return
        try:
            self._terminal.flush()
            if self._stderr is not None:
                self._stderr.flush()  # what is pending for fd 2 goes into the pipe, before it closes
        except (OSError, ValueError):
            pass
        os.dup2(self._saved_fd, 2)  # closes the pipe's write end here; the reader drains and ends
        if sys.stderr is self._terminal:
            sys.stderr = self._stderr
        self._pump.join(timeout=1.0)  # a child still holding the pipe (a Ray daemon) may keep it open
        self._terminal.close()
        os.close(self._saved_fd)
        self._saved_fd, self._pump = None, None

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> "ThirdPartyLog":
        global _active
        if _active is not None:
            raise RuntimeError("a ThirdPartyLog is already active")
        _active = self
        logging.Handler.handle = _handle
        logging.getLogger().addHandler(self._root)
        self._showwarning, warnings.showwarning = warnings.showwarning, self._warning
        if self.capture_fd:
            try:
                self._start_fd_capture()
            except OSError:  # no pipe or descriptor left: Python-level capture only
                self._stop_fd_capture()
        return self

    def __exit__(self, *exc) -> None:
        global _active
        try:
            self._stop_fd_capture()
        finally:
            warnings.showwarning = self._showwarning
            logging.Handler.handle = _ORIGINAL_HANDLE
            logging.getLogger().removeHandler(self._root)
            _active = None
            with self._lock:
                if self._file is not None:
                    self._file.close()
                    self._file = None
