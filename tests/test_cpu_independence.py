"""Shards must not depend on the CPU that made them, nor on where a buffer happened to land.

Two CPU kinds are simulated on one machine by forcing the code below numpy, OpenCV, numba
and libm to other kernels: OpenBLAS's Prescott ones instead of this CPU's, numpy's
baseline loops instead of AVX2 and AVX-512 (whose SVML log10, power and sine round
differently from libm's), OpenCV's without AVX/AVX2/AVX-512, numba compiling for a
generic x86-64, and glibc's libm without its FMA variants. Before the transfers left
BLAS, IDT rows came out differently rounded that way, as a shard row made on an Intel
Xeon did on an AMD EPYC; before ``tasks.core.fixedmath``, every recipe's ΔE and PSNR did on
a CPU with AVX-512 against one without.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.core import linalg3

PROBE = Path(__file__).with_name("colour_probe.py")
OTHER_CPU = {
    "OPENBLAS_CORETYPE": "Prescott",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX,AVX2,FMA3,FP16,AVX512F,AVX512-SKX,AVX512-CLX",
    "NUMBA_CPU_NAME": "generic",
    # (glibc 2.33+ names; older ones read the *_Usable names and ignore the rest)
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX2_Usable,-FMA_Usable,-AVX512F_Usable",
}


def _probe(env: dict[str, str]) -> tuple[dict[str, str], dict]:
    got = subprocess.run([sys.executable, str(PROBE)], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    out = json.loads(got.stdout.strip().splitlines()[-1])
    return out["digests"], out["kernels"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernels only")
def test_colour_work_is_bit_identical_across_runs_and_cpu_kernels(tmp_path):
    """Two processes, the second on other kernels. (Each process also puts its buffers at
    other addresses: with cv2.magnitude, whose rounding followed a buffer's alignment, the
    judge's stored features of the same triple differed even between two plain runs.)"""
    # Each probe computes the look tables itself (not from the cache of tables on disk).
    here, kernels = _probe({"PHRASEHARMONY_CACHE_DIR": "off"})
    assert set(here) == {"codec", "mask fit", "look tables"} | {
        f"{m}{s}" for m in ("reinhard", "xiao_rgb", "hist_ycbcr", "idt", "lut_fg", "lut_pair")
        for s in ("", " measures")}
    other, forced = _probe({**OTHER_CPU, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
                            "PHRASEHARMONY_CACHE_DIR": "off"})
    assert {k: v for k, v in other.items() if here[k] != v} == {}
    # The forcing took effect (on a CPU with AVX2; an older one has nothing to force):
    # the kernels are others, and numpy's and libm's own transcendentals round otherwise.
    if kernels["numpy X86_V3"]:
        assert not forced["numpy X86_V3"] and forced["opencv"] != kernels["opencv"]
        assert forced["openblas"] != kernels["openblas"] or not kernels["openblas"]
    if kernels["numpy X86_V4"]:
        assert not forced["numpy X86_V4"] and forced["numpy"] != kernels["numpy"]
    if " fma " in Path("/proc/cpuinfo").read_text():
        assert forced["libm"] != kernels["libm"]


def _at(a: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``a`` whose data starts ``offset`` bytes past a 64-byte boundary."""
    buf = np.empty(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def test_opencv_calls_of_a_row_round_the_same_wherever_the_buffer_lies():
    """Every OpenCV call a shard row goes through gives the same bits with its inputs and
    its output at other addresses. Some OpenCV loops pick SIMD or scalar paths by a
    buffer's alignment: cv2.magnitude (no longer used) does, by its output's, and is
    checked here as the case this must catch."""
    import cv2

    from tasks.acquire.sample_photos import load_photo
    from tasks.synthesize.realism import lab

    img = cv2.resize(load_photo("coffee"), (128, 128), interpolation=cv2.INTER_AREA)
    lab_img = lab(img)
    a, b = np.ascontiguousarray(lab_img[..., 1]), np.ascontiguousarray(lab_img[..., 2])
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[9:60, 13:90] = 1
    jpeg = cv2.imencode(".jpg", img)[1]
    # Each call: inputs at offset o, output written into ``dst`` (None: OpenCV allocates;
    # the codecs and the reductions take no output buffer, as the pipeline calls them).
    calls = {
        "imdecode": lambda o, dst: cv2.imdecode(_at(jpeg, o), cv2.IMREAD_REDUCED_COLOR_2),
        "imencode jpeg": lambda o, dst: cv2.imencode(".jpg", _at(img, o), [cv2.IMWRITE_JPEG_QUALITY, 95])[1],
        "imencode png": lambda o, dst: cv2.imencode(".png", _at(mask, o) * 255,
                                                    [cv2.IMWRITE_PNG_BILEVEL, 1])[1],
        "cvtColor": lambda o, dst: cv2.cvtColor(_at(img, o).astype(np.float32) / 255, cv2.COLOR_RGB2Lab, dst),
        "resize area": lambda o, dst: cv2.resize(_at(img, o), (40, 30), dst, interpolation=cv2.INTER_AREA),
        "resize linear": lambda o, dst: cv2.resize(_at(img, o), (150, 120), dst,
                                                   interpolation=cv2.INTER_LINEAR),
        "integral": lambda o, dst: cv2.integral(_at(mask, o), dst),
        "mean": lambda o, dst: np.array(cv2.mean(_at(lab_img, o), mask=_at(mask, o))),
        "meanStdDev": lambda o, dst: np.concatenate(cv2.meanStdDev(_at(lab_img, o), mask=_at(mask, o))),
        "norm L1": lambda o, dst: np.array(cv2.norm(_at(a, o), cv2.NORM_L1, mask=_at(mask, o))),
        "Laplacian": lambda o, dst: cv2.Laplacian(_at(a, o), cv2.CV_32F, dst, ksize=1),
        "Sobel": lambda o, dst: cv2.Sobel(_at(a, o), cv2.CV_32F, 1, 0, dst, ksize=3),
        "boxFilter": lambda o, dst: cv2.boxFilter(_at(lab_img, o), cv2.CV_32F, (5, 5), dst, normalize=False,
                                                  borderType=cv2.BORDER_CONSTANT),
        "erode": lambda o, dst: cv2.erode(_at(mask, o), np.ones((3, 3), np.uint8), dst, iterations=2),
        "inRange": lambda o, dst: cv2.inRange(_at(img, o), (245, 245, 245), (255, 255, 255), dst),
        "magnitude (the known case)": lambda o, dst: cv2.magnitude(_at(a, o), _at(b, o), dst),
    }
    offsets = (0, 4, 8, 12, 16, 24, 32, 40, 48)
    moved = {}
    for name, call in calls.items():
        like = call(0, None)
        got = [call(i, _at(np.zeros_like(like), o)).copy() for i in offsets for o in offsets]
        moved[name] = sum(not np.array_equal(g, got[0]) for g in got)
    assert moved.pop("magnitude (the known case)") > 0, "the check no longer sees cv2.magnitude's case"
    assert {name: n for name, n in moved.items() if n} == {}


def test_rotation_is_lapacks_q():
    rng = np.random.default_rng(1)
    for _ in range(500):
        a = rng.normal(size=(3, 3))
        q = linalg3.rotation(a)
        assert np.abs(q - np.linalg.qr(a)[0]).max() < 1e-13
        assert np.abs(q @ q.T - np.eye(3)).max() < 1e-14


def test_small_products_match_numpy():
    rng = np.random.default_rng(2)
    m, x = rng.normal(size=(3, 3)), rng.normal(size=(100_000, 3))
    assert np.allclose(linalg3.apply(x, m), x @ m.T, rtol=0, atol=1e-14)
    # Bit for bit the unfused sums (a fused multiply-add would round once less).
    unfused = x[:, 0:1] * m[:, 0] + x[:, 1:2] * m[:, 1] + x[:, 2:3] * m[:, 2]
    assert np.array_equal(linalg3.apply(x, m), unfused)
    assert np.allclose(linalg3.matmul(m, m.T), m @ m.T, rtol=0, atol=1e-14)
    assert np.allclose(linalg3.inv(m), np.linalg.inv(m), rtol=1e-12, atol=0)
    assert np.allclose(linalg3.cov(x), np.cov(x, rowvar=False), rtol=1e-12, atol=0)
    with pytest.raises(np.linalg.LinAlgError):
        linalg3.inv(np.ones((3, 3)))


def test_regrain_solver_matches_scipy():
    from scipy.sparse import diags
    from scipy.sparse.linalg import cg

    from tasks.synthesize.transfers import conjugate_gradient

    n = 400
    rng = np.random.default_rng(3)
    a = diags([-np.ones(n - 1), 2.5 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]).tocsr()
    b, x0 = rng.random(n), rng.random(n)
    mine = conjugate_gradient(a, b, x0, rtol=1e-8, maxiter=500)
    theirs, info = cg(a, b, x0=x0, rtol=1e-8, maxiter=500)
    assert info == 0 and np.abs(mine - theirs).max() < 1e-9
    assert np.linalg.norm(a @ mine - b) < 1e-8 * np.linalg.norm(b)
