"""Ctrl-C during generation: the first SIGINT stops the sweep after the current call, a second stops it at once.

``stop_on_sigint`` installs the handler around the generation loop (and restores the previous one);
the worker calls ``check_stop()`` between calls, which raises :class:`StopRequested` once a stop was asked.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_stop = threading.Event()


class StopRequested(BaseException):
    """Raised by the worker between calls after a first Ctrl-C (a BaseException: no ``except Exception`` eats it)."""


def check_stop() -> None:
    if _stop.is_set():
        raise StopRequested()


def stop_requested() -> bool:
    """Whether a stop was asked (for loops that poll rather than raise: a load level cancels its requests)."""
    return _stop.is_set()


def request_stop() -> None:
    """Ask for a stop where no SIGINT arrives (a Ray actor, told by its driver): the same as a first Ctrl-C."""
    _stop.set()


class StopFlag:
    """Whether a stop was asked while the handler was installed (still readable after it is removed)."""

    requested = False


@contextmanager
def stop_on_sigint(log: Callable[[str], None] = lambda msg: None) -> Iterator[StopFlag]:
    """While active, a first SIGINT sets the stop flag (and logs a note), a second raises KeyboardInterrupt.

    Only the main thread can install signal handlers; elsewhere Ctrl-C keeps its usual meaning.
    """
    _stop.clear()
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        _stop.set()
        log("stopping after the current call (press Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
        _stop.clear()
