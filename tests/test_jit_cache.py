"""Compiled kernels are cached per version of every file holding compiled code."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tasks.core import jit_cache


def test_an_edit_to_a_called_kernel_file_is_a_fresh_cache_folder(tmp_path):
    """numba itself would keep colorimetry's cached ΔE after an edit to fixedmath's cbrt
    (another file); the folder's digest covers both."""
    for name in ("tasks/core/fixedmath.py", "tasks/synthesize/colorimetry.py", "tasks/synthesize/metrics.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(jit_cache.ROOT / name, tmp_path / name)
    before = jit_cache.sources_digest(tmp_path)
    with open(tmp_path / "tasks/synthesize/metrics.py", "a") as f:   # (no compiled code)
        f.write("\n# a comment\n")
    assert jit_cache.sources_digest(tmp_path) == before
    with open(tmp_path / "tasks/core/fixedmath.py", "a") as f:
        f.write("\n# a comment\n")
    assert jit_cache.sources_digest(tmp_path) != before


def test_kernels_compile_into_the_digest_folder(tmp_path):
    code = ("import numpy as np; from tasks.synthesize.colorimetry import mean_delta_e; "
            "import numba; px = np.zeros((4, 3), np.uint8); mean_delta_e(px, px); "
            "print(numba.config.CACHE_DIR)")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=jit_cache.ROOT, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    folder = Path(got.stdout.strip().splitlines()[-1])
    assert folder == tmp_path / jit_cache.sources_digest()
    assert any(folder.rglob("colorimetry*.nbi"))   # numba's index of cached functions
