"""Child processes that die with the build that started them (imports no Prefect)."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux): a worker or
    a temporary server must never outlive a killed build. Elsewhere the publish check in
    ``tasks.shards`` (parent pid, folder token) is the guard."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
