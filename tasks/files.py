"""Small file helpers every stage shares: hashing and atomic, change-aware writes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


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
