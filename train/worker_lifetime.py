"""Loader processes die with the trainer that started them.

The DataLoader workers come from a fork server (``train.loader.worker_context``): the
trainer is the server's parent, the server each worker's. Killed without cleanup
(SIGKILL, an out-of-memory kill, one torchrun rank killed), the trainer used to leave the
server and its workers running with parent 1, holding memory and the terminal's pipes.
The fork server imports this module first (its preload) and from then on the kernel
kills it when the trainer dies; each worker asks the same of the server when it starts.
The multiprocessing resource tracker needs nothing: it exits once every process that
holds its pipe (trainer, server, workers) is gone.
"""

from __future__ import annotations

import os
import sys

from tasks.core.lifecycle import die_with_parent


def _in_fork_server() -> bool:
    # multiprocessing starts the server as `python -c 'from multiprocessing.forkserver
    # import main; main(...)'`, which imports its preload modules before serving.
    return sys.argv == ["-c"] and "multiprocessing.forkserver" in sys.modules


# The fork server's pid, inherited by the workers it forks (None in any other process).
SERVER_PID: int | None = None
if _in_fork_server():
    SERVER_PID = os.getpid()
    die_with_parent()   # (a trainer already gone closes the server's pipe: it exits on its own)


def worker_started() -> None:
    """In a DataLoader worker: die with the fork server that forked it."""
    if SERVER_PID is not None:
        die_with_parent(SERVER_PID)
