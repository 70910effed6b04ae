"""User-facing errors: one line, no traceback, exit code 2 from the CLI."""

from __future__ import annotations


class GensrError(Exception):
    """A mistake in user input (file, checkpoint, config, option).

    The message is a single line that names the offending file or option and the problem.
    The CLI prints it as ``gensr: error: <message>`` and exits with status 2.
    """


class NonFiniteLossError(GensrError):
    """Training produced too many non-finite losses in a row."""
