"""Ctrl-C stops a run cleanly: never inside a write transaction, and never lost.

A KeyboardInterrupt raised at an arbitrary bytecode inside SQLAlchemy's commit or connection
clean-up left its bookkeeping half done (seen: an AssertionError reported as an unexpected
error, a logged traceback while closing the connection). `held` makes SIGINT wait for the
transaction's commit or rollback, so every batch stored stays stored and the CLI prints its
one "interrupted" line.

A KeyboardInterrupt raised where Python can only print it (a weakref callback, `__del__`,
importlib's module-lock clean-up during a lazy import) is "ignored": Python printed a
traceback and the run went on to finish with status 0 (seen in CI: Ctrl-C right after the
first batch). Inside `watched`, the signal is also noted, `check` raises it again at the next
batch boundary, and that traceback is not printed.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

_seen: list[int] = []  # SIGINTs noted inside `watched` and not yet acted on


def _note_and_raise(signum: int, frame: FrameType | None) -> None:
    _seen.append(signum)
    raise KeyboardInterrupt


def _ours(handler: object) -> bool:
    """Python's own handler or `watched`'s, in the main thread: the handlers this module may
    stand in for (a server's or an outer block's is left alone)."""
    return threading.current_thread() is threading.main_thread() and (
        handler is signal.default_int_handler or handler is _note_and_raise
    )


@contextlib.contextmanager
def watched() -> Iterator[None]:
    """For a long run: SIGINT raises as usual and is noted, so that `check` can raise it again
    if something swallowed it."""
    if not _ours(signal.getsignal(signal.SIGINT)):
        yield
        return
    hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        if not (_seen and isinstance(info.exc_value, KeyboardInterrupt)):
            hook(info)  # anything else is reported as before

    previous = signal.signal(signal.SIGINT, _note_and_raise)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        _seen.clear()


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT came inside `watched` (a no-op outside it)."""
    if _seen:
        raise KeyboardInterrupt


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT until the block ends, then raise KeyboardInterrupt if one came."""
    previous = signal.getsignal(signal.SIGINT)
    if not _ours(previous):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if previous is _note_and_raise:
                _seen.extend(caught)
            raise KeyboardInterrupt
