"""Interrupts held back while a training step runs, so that a checkpoint never holds half an iteration.

A SIGINT (Ctrl-C), SIGTERM or SIGHUP that arrives inside :func:`signals_held` is recorded, not acted on; when the
block ends normally, the handler that was in force before (Python's KeyboardInterrupt, the CLI's
``Terminated``, or the default action) receives it. Within a step the optimisers may already have stepped some
networks and not others (a D update of a GAN iteration); raising there and saving would label a state that is
half an iteration ahead, and a resumed run would not continue exactly.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["HELD_SIGNALS", "signals_held"]

HELD_SIGNALS: tuple[str, ...] = ("SIGINT", "SIGTERM", "SIGHUP")


def _deliver(signum: int, handler: Any) -> None:
    """Act on ``signum`` as ``handler`` (the one in force before the block) would have."""
    if callable(handler):
        handler(signum, None)
    elif handler != signal.SIG_IGN:  # SIG_DFL (or a handler set outside Python): the default action
        os.kill(os.getpid(), signum)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block has finished (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, Any] = {}
    for name in HELD_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        _deliver(caught[0], previous[caught[0]])
