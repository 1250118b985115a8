"""Errors a user can cause or fix, carried up to one line and an exit code."""

from __future__ import annotations


class UserError(Exception):
    """A failure with a message meant for the user; exits with ``exit_code``.

    The one error type every command (agent, aggregator, CLI) turns into one line
    on stderr and that exit code, without a traceback."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(UserError):
    """A bad flag or argument value (exit code 2, like argparse)."""

    exit_code = 2
