"""Ctrl-C never cuts a write transaction in half: inside one, SIGINT waits for its end.

A KeyboardInterrupt raised at an arbitrary bytecode inside SQLAlchemy's commit or connection
clean-up left its bookkeeping half done (seen: an AssertionError reported as an unexpected
error, a logged traceback while closing the connection). Held here, the interrupt is raised
as soon as the transaction has committed or rolled back, so every batch stored stays stored
and the CLI prints its one "interrupted" line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT until the block ends, then raise KeyboardInterrupt if one came. Only where
    Python's own handler is installed, in the main thread (a server's or an outer block's
    handler is left alone)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt
