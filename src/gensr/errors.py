"""User-facing errors: one line, no traceback, exit code 2 from the CLI."""

from __future__ import annotations


class GensrError(Exception):
    """A mistake in user input (file, checkpoint, config, option).

    The message is a single line that names the offending file or option and the problem.
    The CLI prints it as ``gensr: error: <message>`` and exits with status 2.
    """


class NonFiniteLossError(GensrError):
    """Training produced too many non-finite losses in a row."""


def one_line(exc: BaseException | str, limit: int = 200) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` characters."""
    return " ".join(str(exc).split())[:limit]


def listing(items: list[str], limit: int = 10) -> str:
    """``a, b, c, ... (N more)``: the first ``limit`` items of a list for an error message."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def note(message: str) -> None:
    """A one-line note for the user on stderr (``gensr: note: ...``), flushed at once."""
    import sys

    print(f"gensr: note: {message}", file=sys.stderr, flush=True)
