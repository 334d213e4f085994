"""Small file helpers every stage shares: hashing and atomic, change-aware writes."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


@contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """One writer per output folder at a time (a build, or a download): an advisory lock
    on ``OUT/.lock`` that the OS drops when the process dies, however it dies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{out_dir}: another build or download is running on this folder") from None
        yield
