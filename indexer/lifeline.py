"""Decode processes die with the run that started them, even when it is SIGKILLed.

multiprocessing's forkserver notices its parent's death only through a pipe, which can take a
while on a loaded machine; Linux can deliver the signal itself (prctl PR_SET_PDEATHSIG).
The forkserver preloads `indexer.forkserver_init` (which calls `die_with_parent`), tying it to
the indexer; `die_with_parent` is also each decode worker's initializer, tying it to the
forkserver.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def exit_with_run(nice: int = 0) -> None:
    """Pool initializer: exit when the run that asked for this worker dies, even by SIGKILL;
    with `nice`, run at that much lower CPU priority (DecodeStream's `nice`).

    A forkserver's worker is the forkserver's child, so PR_SET_PDEATHSIG ties it to the
    forkserver, and a worker still starting when the run dies misses that signal. The parent
    sentinel multiprocessing hands every worker is the run itself and cannot be missed: it is
    ready from the moment the run is gone.
    """
    import multiprocessing
    import threading
    from multiprocessing.connection import wait

    ignore_interrupts()
    if nice:
        with contextlib.suppress(OSError):  # not allowed: at normal priority it still decodes
            os.nice(nice)
    run = multiprocessing.parent_process()
    if run is None:
        return

    def watch() -> None:
        wait([run.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-run", daemon=True).start()


def ignore_interrupts() -> None:
    """Ctrl-C reaches the whole foreground process group: the run handles it (one message, its
    pool shut down); a decode process would only print a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux; no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
