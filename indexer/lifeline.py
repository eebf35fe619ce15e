"""Decode processes die with the run that started them, even when it is SIGKILLed.

multiprocessing's forkserver notices its parent's death only through a pipe, which can take a
while on a loaded machine; Linux can deliver the signal itself (prctl PR_SET_PDEATHSIG).
The forkserver preloads `indexer.forkserver_init` (which calls `die_with_parent`), tying it to
the indexer; `die_with_parent` is also each decode worker's initializer, tying it to the
forkserver.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


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
