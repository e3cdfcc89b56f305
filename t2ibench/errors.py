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
