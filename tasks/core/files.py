"""Small file helpers every stage shares: hashing and atomic, change-aware writes."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from schemas.errors import UserError

LOCK_NAME = ".lock"


def user_cache_dir() -> Path | None:
    """Where work kept between processes lives (the look tables, compiled kernels):
    ``PHRASEHARMONY_CACHE_DIR``, else ``$XDG_CACHE_HOME/phraseharmony``, else
    ``~/.cache/phraseharmony``; None when caching is off (``PHRASEHARMONY_CACHE_DIR=off``)
    or there is no home directory to be found."""
    chosen = os.environ.get("PHRASEHARMONY_CACHE_DIR")
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "phraseharmony"
    try:
        return Path.home() / ".cache" / "phraseharmony"
    except RuntimeError:
        return None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_nofollow(path: Path, mode: str = "wb"):
    """``open`` for writing that never writes through a symbolic link: a link planted
    at ``path`` is removed first, and O_NOFOLLOW refuses one planted in between.
    ``mode``: "wb" (create or truncate) or "r+b" (an existing file)."""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
    flags = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "r+b": os.O_RDWR,
             "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode]
    return os.fdopen(os.open(path, flags | os.O_NOFOLLOW, 0o644), mode)


def read_record(path: Path, keys: tuple[str, ...], damaged: str) -> dict[str, Any] | None:
    """A JSON state file (done-marker, sidecar) holding an object with ``keys``; None when
    it is missing, and None with one log line ("<path>: <damaged>") when it is not such
    an object (truncated, ``[]``, ``null``, keys lost): its output is then made again."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or not all(k in data for k in keys):
        logging.getLogger("phraseharmony.state").warning("%s: %s", path, damaged)
        return None
    return data


def write_bytes_atomic(path: Path, data: bytes) -> bool:
    """Write via a temporary name and rename; return False (touching nothing) when the
    file already holds exactly these bytes, so reruns leave outputs untouched."""
    if path.exists() and path.read_bytes() == data:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def write_json_atomic(path: Path, data: Any) -> bool:
    return write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


class FolderBusy(UserError, RuntimeError):
    """Another build or download holds the output folder."""


def _lock_or_busy(handle, out_dir: Path) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FolderBusy(f"{out_dir}: another build or download is running on this folder") from None


@contextmanager
def exclusive(out_dir: Path) -> Iterator[str]:
    """One writer per output folder at a time (a build, or a download): an advisory lock
    on ``OUT/.lock`` that the OS drops when the process dies, however it dies.

    Yields this run's token, also written into the lock file: a worker checks it before
    it publishes anything (``still_owner``), so a worker orphaned by a killed run can
    never publish into a folder that a later run now owns."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_NAME, "a+") as handle:
        _lock_or_busy(handle, out_dir)
        token = f"{os.getpid()}-{uuid.uuid4().hex}"
        handle.seek(0)
        handle.truncate()
        handle.write(token)
        handle.flush()
        yield token


def check_free(out_dir: Path) -> None:
    """Raise ``FolderBusy`` at once if another run holds ``out_dir``: the CLI asks before it
    starts a temporary Prefect server (~25 s spent before the flow found the lock taken).
    Takes nothing: the flow still locks the folder itself."""
    if not (out_dir / LOCK_NAME).exists():
        return
    with open(out_dir / LOCK_NAME, "a+") as handle:
        _lock_or_busy(handle, out_dir)   # released when the file closes


def revoke(out_dir: Path, token: str) -> None:
    """Withdraw ``token`` while still holding the lock (Ctrl-C): every worker of this
    build, in any process, stops at its next image and publishes nothing more."""
    with open(out_dir / LOCK_NAME, "r+") as handle:
        if handle.read() == token:
            handle.seek(0)
            handle.truncate()
            handle.write(f"revoked:{token}")


def still_owner(out_dir: Path, token: str | None) -> bool:
    """True while the run that issued ``token`` holds the folder (None: not checked)."""
    if token is None:
        return True
    try:
        return (out_dir / LOCK_NAME).read_text() == token
    except OSError:
        return False
