"""The built-in looks' tables, kept on disk between processes.

Computing the 104 tables costs ~3 s of CPU (importing colour-science for white balance
alone ~1.5 s) in every process that builds: each CLI build, each process-runner or Dask
worker, each deployment run. The tables are a pure function of the code that makes them
and the libraries it calls, so they are stored under a key digesting exactly those
(the sources of the look families, the LUT sampler, the fixed-order maths; numpy, numba
and colour-science versions; the machine kind) with a checksum of the bytes: a changed
input is a new key, a damaged file is recomputed. ``PHRASEHARMONY_CACHE_DIR`` moves
the cache (default ``$XDG_CACHE_HOME/phraseharmony``, else ``~/.cache/phraseharmony``);
``PHRASEHARMONY_CACHE_DIR=off`` computes every time.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

import tasks.core.fixedmath
import tasks.core.linalg3
import tasks.synthesize.luts
from tasks.core.files import user_cache_dir

# Every module whose code decides a table's bytes.
_SOURCES = (Path(__file__).with_name("looks.py"), Path(tasks.synthesize.luts.__file__),
            Path(tasks.core.fixedmath.__file__), Path(tasks.core.linalg3.__file__))
_LIBRARIES = ("numpy", "numba", "llvmlite", "colour-science")


def tables_key(size: int, looks_json: str) -> str:
    h = hashlib.sha256(f"{size}\n{looks_json}\n{sys.version_info[:2]}\n{platform.machine()}\n".encode())
    for name in _LIBRARIES:
        h.update(f"{name}={metadata.version(name)}\n".encode())
    for path in _SOURCES:
        h.update(path.read_bytes())
    return h.hexdigest()[:24]


def cached_tables(size: int, looks_json: str, count: int,
                  compute: Callable[[], np.ndarray]) -> np.ndarray:
    """float32 (count, size, size, size, 3): from the cache when its file is whole, else
    ``compute()`` (stored for the next process; a cache that cannot be written is skipped)."""
    folder = user_cache_dir()   # (None: caching is off)
    if folder is None:
        return compute()
    path = folder / f"looks-{tables_key(size, looks_json)}.npy"
    shape = (count, size, size, size, 3)
    try:
        stored = np.load(path, allow_pickle=False)
        digest = path.with_suffix(".sha256").read_text().strip()
        if stored.dtype == np.float32 and stored.shape == shape and \
                hashlib.sha256(stored.tobytes()).hexdigest() == digest:
            return stored
    except (OSError, ValueError):
        pass   # absent, truncated or unreadable: computed below
    tables = np.ascontiguousarray(compute(), dtype=np.float32)
    assert tables.shape == shape, tables.shape
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, tables, allow_pickle=False)
        # The checksum first: a reader that finds the table finds its checksum too.
        sums = path.with_suffix(".sha256")
        sums_tmp = folder / f".{sums.name}.{os.getpid()}.tmp"
        sums_tmp.write_text(hashlib.sha256(tables.tobytes()).hexdigest() + "\n")
        os.replace(sums_tmp, sums)
        os.replace(tmp, path)
    except OSError:
        pass   # a read-only home: compute each time
    return tables
