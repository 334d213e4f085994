"""The code version stamped into every output: release + a digest of the pipeline source.

Two builds with the same config and the same code give byte-identical shards; any edit
to the code that makes the bytes changes this version, and so invalidates done-markers.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The packages whose code decides what lands in a shard (their subpackages included).
SOURCE_DIRS = ("tasks", "schemas", "lut_library")
# Files there that never touch a shard: editing the training config's schema must not
# rebuild datasets.
NOT_OUTPUT = {"schemas/train_config.py"}


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        release = version("phraseharmony")
    except PackageNotFoundError:
        release = "0+unknown"
    h = hashlib.sha256()
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name in NOT_OUTPUT:
                continue
            h.update(name.encode())
            h.update(path.read_bytes())
    return f"{release}+src.{h.hexdigest()[:12]}"
