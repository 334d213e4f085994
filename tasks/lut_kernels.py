"""Compiled LUT kernels on uint8 pixels (numba, cached on disk after the first call).

Inputs come from ``Lut3D.positions()``: per channel and code, the lattice cell and the
fraction, so the kernels do only the interpolation. The fused kernel makes a whole
composite in one pass: target = B(I) (or I), composite = A(I) on the mask, target
elsewhere — A is evaluated on foreground pixels only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# cache=True: compiled once per machine into __pycache__, not once per task run.
_JIT = {"cache": True, "nogil": True, "fastmath": False, "boundscheck": False}


@njit(**_JIT)
def _store(out, i, v0, v1, v2):
    # Clamp after lookup (tables may hold values outside [0, 1]); round half up.
    out[i, 0] = np.uint8(min(max(v0, 0.0), 1.0) * 255.0 + 0.5)
    out[i, 1] = np.uint8(min(max(v1, 0.0), 1.0) * 255.0 + 0.5)
    out[i, 2] = np.uint8(min(max(v2, 0.0), 1.0) * 255.0 + 0.5)


@njit(**_JIT)
def _tetra(px, i, base, frac, table, n, out, o):
    r, g, b = px[i, 0], px[i, 1], px[i, 2]
    fr, fg, fb = frac[0, r], frac[1, g], frac[2, b]
    sr, sg = n * n, n
    i0 = base[0, r] * sr + base[1, g] * sg + base[2, b]
    i3 = i0 + sr + sg + 1
    if fr >= fg:
        if fg >= fb:      # r > g > b
            s1, s2, f1, f2, f3 = sr, sr + sg, fr, fg, fb
        elif fr >= fb:    # r > b > g
            s1, s2, f1, f2, f3 = sr, sr + 1, fr, fb, fg
        else:             # b > r > g
            s1, s2, f1, f2, f3 = 1, sr + 1, fb, fr, fg
    else:
        if fb >= fg:      # b > g > r
            s1, s2, f1, f2, f3 = 1, sg + 1, fb, fg, fr
        elif fb >= fr:    # g > b > r
            s1, s2, f1, f2, f3 = sg, sg + 1, fg, fb, fr
        else:             # g > r > b
            s1, s2, f1, f2, f3 = sg, sr + sg, fg, fr, fb
    w0, w1, w2 = 1.0 - f1, f1 - f2, f2 - f3
    i1, i2 = i0 + s1, i0 + s2
    _store(out, o,
           w0 * table[i0, 0] + w1 * table[i1, 0] + w2 * table[i2, 0] + f3 * table[i3, 0],
           w0 * table[i0, 1] + w1 * table[i1, 1] + w2 * table[i2, 1] + f3 * table[i3, 1],
           w0 * table[i0, 2] + w1 * table[i1, 2] + w2 * table[i2, 2] + f3 * table[i3, 2])


@njit(**_JIT)
def _trilinear(px, i, base, frac, table, n, out, o):
    r, g, b = px[i, 0], px[i, 1], px[i, 2]
    fr, fg, fb = frac[0, r], frac[1, g], frac[2, b]
    i0 = base[0, r] * n * n + base[1, g] * n + base[2, b]
    acc0 = 0.0
    acc1 = 0.0
    acc2 = 0.0
    for corner in range(8):
        dr, dg, db = (corner >> 2) & 1, (corner >> 1) & 1, corner & 1
        w = (fr if dr else 1.0 - fr) * (fg if dg else 1.0 - fg) * (fb if db else 1.0 - fb)
        j = i0 + dr * n * n + dg * n + db
        acc0 += w * table[j, 0]
        acc1 += w * table[j, 1]
        acc2 += w * table[j, 2]
    _store(out, o, acc0, acc1, acc2)


@njit(**_JIT)
def _apply_tetra(px, base, frac, table, n, out):
    for i in range(px.shape[0]):
        _tetra(px, i, base, frac, table, n, out, i)


@njit(**_JIT)
def _apply_trilinear(px, base, frac, table, n, out):
    for i in range(px.shape[0]):
        _trilinear(px, i, base, frac, table, n, out, i)


@njit(**_JIT)
def _composite(px, mask, base_a, frac_a, table_a, n_a, base_b, frac_b, table_b, n_b,
               use_b, target, comp):
    for i in range(px.shape[0]):
        if use_b:
            _tetra(px, i, base_b, frac_b, table_b, n_b, target, i)
        else:
            target[i, 0], target[i, 1], target[i, 2] = px[i, 0], px[i, 1], px[i, 2]
        if mask[i]:
            _tetra(px, i, base_a, frac_a, table_a, n_a, comp, i)
        else:
            comp[i, 0], comp[i, 1], comp[i, 2] = target[i, 0], target[i, 1], target[i, 2]


def apply_u8(px: np.ndarray, base: np.ndarray, frac: np.ndarray, table: np.ndarray, n: int,
             interpolation: str = "tetrahedral") -> np.ndarray:
    """(M, 3) uint8 -> (M, 3) uint8 through one LUT."""
    out = np.empty_like(px)
    if interpolation == "tetrahedral":
        _apply_tetra(px, base, frac, table, n, out)
    elif interpolation == "trilinear":
        _apply_trilinear(px, base, frac, table, n, out)
    else:
        raise ValueError(f"unknown interpolation {interpolation!r}")
    return out


def composite_u8(img: np.ndarray, mask: np.ndarray, lut_a, lut_b=None) -> tuple[np.ndarray, np.ndarray]:
    """One pass: (target, composite) for H x W x 3 ``img`` and H x W bool ``mask``.

    With ``lut_b``: SSH-style pair, target = B(I). Without: target = I.
    """
    px = np.ascontiguousarray(img).reshape(-1, 3)
    m = np.ascontiguousarray(mask).reshape(-1)
    target, comp = np.empty_like(px), np.empty_like(px)
    ba, fa = lut_a._positions
    b = lut_b if lut_b is not None else lut_a
    bb, fb = b._positions
    _composite(px, m, ba, fa, lut_a.flat_table, lut_a.size, bb, fb, b.flat_table, b.size,
               lut_b is not None, target, comp)
    return target.reshape(img.shape), comp.reshape(img.shape)
