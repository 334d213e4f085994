"""A temporary local Prefect server for one CLI build, owned by the CLI.

Prefect starts one by itself when no ``PREFECT_API_URL`` is set, but in the terminal's
process group (Ctrl-C kills it first, and the build then floods the terminal with
connection errors) and with nothing tying it to its parent (a SIGKILLed CLI leaves it
running). This one runs in a session of its own, dies with the CLI (parent-death signal)
and is stopped by the CLI after the flow run has reached its final state. It imports no
Prefect: ``PREFECT_API_URL`` must be set before Prefect's settings are first read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from schemas.errors import UserError
from tasks.core.lifecycle import die_with_parent

STARTUP_TIMEOUT_S = 90.0


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still holds while the server is up (else its
    workers retry against a stopped server for a minute at exit)."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


@contextlib.contextmanager
def temporary_server(home: Path) -> Iterator[str]:
    """Yield the API URL of a server on the SQLite database under ``home`` (created and
    migrated on first use), stopped on exit. Touches no environment variable."""
    prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
    port = _free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "temporary-server.log"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "0",
           "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"the temporary Prefect server did not start (see {log_path}); "
                                "or start one (`make server`) and set PREFECT_API_URL")
            time.sleep(0.2)
        yield url
    finally:
        _drain_prefect_workers()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the API URL to use: ``PREFECT_API_URL`` when set, else a temporary server's
    (SQLite under ``PREFECT_HOME``), which is stopped on exit."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    with temporary_server(Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))) as url:
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:   # (the server drains Prefect's log and event workers before it stops)
            os.environ.pop("PREFECT_API_URL", None)
