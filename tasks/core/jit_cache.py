"""Numba's on-disk cache of compiled kernels, one folder per version of their sources.

numba drops a cached function when its own file changes, not when a compiled function
it calls from another file does: after an edit to ``fixedmath.cbrt``, the ΔE kernel
cached from ``colorimetry.py`` would keep the old cube root, and a rerun would give
other bytes than a clean build. So the kernels are cached under a digest of every
source file that holds compiled code (and numba's version): an edit to any of them is a
fresh folder. The folder's base is ``NUMBA_CACHE_DIR`` when set, else ``numba/`` in
``tasks.core.files.user_cache_dir``, else (``PHRASEHARMONY_CACHE_DIR=off``, no home
directory) in the temporary directory: never numba's own place beside the sources.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from tasks.core.files import user_cache_dir

ROOT = Path(__file__).resolve().parents[2]
# The packages whose compiled functions call each other across files.
PACKAGES = ("tasks", "lut_library")


def sources_digest(root: Path = ROOT) -> str:
    import numba

    h = hashlib.sha256(f"numba={numba.__version__}\n".encode())
    for folder in PACKAGES:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_bytes()
            if b"numba" in text:
                h.update(path.relative_to(root).as_posix().encode() + b"\n" + text)
    return h.hexdigest()[:16]


def cache_base() -> Path:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return (user_cache_dir() or Path(tempfile.gettempdir()) / "phraseharmony") / "numba"


def configure() -> None:
    """Point numba's cache at this version's folder. Must run before any module with
    ``@njit(cache=True)`` is imported (numba picks a function's cache folder when it
    decorates it): ``tasks/__init__.py`` calls it."""
    import numba

    numba.config.CACHE_DIR = str(cache_base() / sources_digest())
