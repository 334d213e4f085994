"""Child processes that die with the build or trainer that started them (imports no Prefect)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux): a worker or
    a temporary server must never outlive a killed build. ``parent``: the pid the parent
    had; if it is gone already (it died before the request took effect), exit now.
    Elsewhere the publish check in ``tasks.publish.shards`` (parent pid, folder token) is the guard."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)
