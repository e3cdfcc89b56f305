"""User-facing errors: one clear line, exit code 2, no traceback (unless --debug)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad suite, missing file or weights, unsupported option).

    The CLI prints ``str(error)`` on stderr and exits with code 2. ``problems`` may hold
    several lines, one per problem, when validation collects more than one.
    """

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class RunLockedError(UserError):
    """Another t2ibench process is writing to the same run directory."""


class SkipConfig(Exception):
    """A config that cannot run here (xformers missing, flash on CPU, …); recorded as skipped."""


class DiskFullError(Exception):
    """The disk filled up while writing a run (an image, the store, a report). The CLI exits 1.

    Every committed cell points to a complete image, so the same command resumes once space is free.
    """

    exit_code = 1


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C: what was finished is saved, and rerunning resumes it. The CLI exits 130.

    ``immediate`` is False after a first Ctrl-C (the run stopped after its current call and wrote its
    reports) and True after a second one (it stopped at once).
    """

    def __init__(self, run_dir, done: int, total: int, immediate: bool = False):
        saved = "cell is" if total == 1 else "cells are"
        super().__init__(f"interrupted: {done} of {total} {saved} saved in {run_dir}")
        self.run_dir, self.done, self.total, self.immediate = run_dir, done, total, immediate


def disk_full(exc: BaseException, where) -> DiskFullError | None:
    """A :class:`DiskFullError` naming the path if ``exc`` (or an exception it chains) is ENOSPC/EDQUOT or
    SQLite's "database or disk is full"; None for any other error. ``where`` is the path when unknown."""
    import errno
    import sqlite3
    from pathlib import Path

    seen, path = set(), None
    while exc is not None and id(exc) not in seen:  # the deepest is the first write that failed
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            path = exc.filename or where
        elif isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                                 or "database or disk is full" in str(exc)):
            store = Path(where) / "run.sqlite"
            path = store if store.exists() else where
        exc = exc.__cause__ or exc.__context__
    if path is None:
        return None
    return DiskFullError(f"the disk is full: no space left on the device writing '{path}'; free some space, "
                         "then rerun the same command to resume")
