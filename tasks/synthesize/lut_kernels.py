"""Compiled LUT kernels on uint8 pixels (numba, cached on disk after the first call).

Inputs come from ``Lut3D.positions()``: per channel and input code, the offset of the
lattice cell in the flat table (strides folded in) and the fraction, so the kernels do
only the interpolation, in float32. The fused kernel makes a whole composite in one
pass: target = B(I) (or I), composite = A(I) on the mask and the target elsewhere; A is
evaluated on foreground pixels only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# cache=True: compiled once per machine into __pycache__, not once per task run.
# fastmath, only the flags that cannot change a result here (inputs are uint8, tables are
# finite, and the sign of a zero is lost to the clamp): they let min/max compile to
# single instructions, ~1.5x faster. No "contract"/"reassoc": FMA use would vary by CPU
# and break byte-identical shards across machines.
_JIT = {"cache": True, "nogil": True, "boundscheck": False, "fastmath": {"nnan", "ninf", "nsz"}}
_ZERO, _ONE, _SCALE, _HALF = np.float32(0.0), np.float32(1.0), np.float32(255.0), np.float32(0.5)
_INV255 = np.float32(1.0 / 255.0)


# inline="always": inlined at numba IR level into each loop; a plain call costs 2x here.
@njit(inline="always", **_JIT)
def _tetra(r, g, b, off, frac, t, n, out, i, s, blend):
    """Tetrahedral lookup of pixel (r, g, b) into out[i]: walk from the base corner
    toward the far one along axes in order of decreasing fraction (one of six
    tetrahedra). With ``blend``, ``s`` is the strength: out = in + s * (LUT(in) - in).
    (The pixel's codes and the blend flag come from the caller, read once per pixel and
    once per call: ~10% faster than reading them here.)"""
    sr, sg, sb = n * n * 3, n * 3, 3
    fr, fg, fb = frac[0, r], frac[1, g], frac[2, b]
    i0 = off[0, r] + off[1, g] + off[2, b]
    if fr >= fg:
        if fg >= fb:      # r >= g >= b
            s1, s2, f1, f2, f3 = sr, sr + sg, fr, fg, fb
        elif fr >= fb:    # r >= b > g
            s1, s2, f1, f2, f3 = sr, sr + sb, fr, fb, fg
        else:             # b > r >= g
            s1, s2, f1, f2, f3 = sb, sr + sb, fb, fr, fg
    else:
        if fb >= fg:      # b >= g > r
            s1, s2, f1, f2, f3 = sb, sg + sb, fb, fg, fr
        elif fb >= fr:    # g > b >= r
            s1, s2, f1, f2, f3 = sg, sg + sb, fg, fb, fr
        else:             # g > r > b
            s1, s2, f1, f2, f3 = sg, sr + sg, fg, fr, fb
    w0, w1, w2 = _ONE - f1, f1 - f2, f2 - f3
    i1, i2, i3 = i0 + s1, i0 + s2, i0 + sr + sg + sb
    v0 = w0 * t[i0] + w1 * t[i1] + w2 * t[i2] + f3 * t[i3]
    v1 = w0 * t[i0 + 1] + w1 * t[i1 + 1] + w2 * t[i2 + 1] + f3 * t[i3 + 1]
    v2 = w0 * t[i0 + 2] + w1 * t[i1 + 2] + w2 * t[i2 + 2] + f3 * t[i3 + 2]
    if blend:
        p0, p1, p2 = np.float32(r) * _INV255, np.float32(g) * _INV255, np.float32(b) * _INV255
        v0, v1, v2 = p0 + s * (v0 - p0), p1 + s * (v1 - p1), p2 + s * (v2 - p2)
    # Clamp after lookup (tables may hold values outside [0, 1]); round half up.
    out[i, 0] = np.uint8(min(max(v0, _ZERO), _ONE) * _SCALE + _HALF)
    out[i, 1] = np.uint8(min(max(v1, _ZERO), _ONE) * _SCALE + _HALF)
    out[i, 2] = np.uint8(min(max(v2, _ZERO), _ONE) * _SCALE + _HALF)


@njit(inline="always", **_JIT)
def _trilinear(px, i, off, frac, t, n, out):
    sr, sg, sb = n * n * 3, n * 3, 3
    r, g, b = px[i, 0], px[i, 1], px[i, 2]
    fr, fg, fb = frac[0, r], frac[1, g], frac[2, b]
    i0 = off[0, r] + off[1, g] + off[2, b]
    for c in range(3):
        j = i0 + c
        c00 = t[j] + fb * (t[j + sb] - t[j])
        c01 = t[j + sg] + fb * (t[j + sg + sb] - t[j + sg])
        c10 = t[j + sr] + fb * (t[j + sr + sb] - t[j + sr])
        c11 = t[j + sr + sg] + fb * (t[j + sr + sg + sb] - t[j + sr + sg])
        c0 = c00 + fg * (c01 - c00)
        c1 = c10 + fg * (c11 - c10)
        v = c0 + fr * (c1 - c0)
        out[i, c] = np.uint8(min(max(v, _ZERO), _ONE) * _SCALE + _HALF)


@njit(**_JIT)
def _apply_tetra(px, off, frac, t, n, out, s):
    blend = s != _ONE
    for i in range(px.shape[0]):
        _tetra(px[i, 0], px[i, 1], px[i, 2], off, frac, t, n, out, i, s, blend)


@njit(**_JIT)
def _apply_trilinear(px, off, frac, t, n, out):
    for i in range(px.shape[0]):
        _trilinear(px, i, off, frac, t, n, out)


@njit(**_JIT)
def _composite(px, mask, off_a, frac_a, t_a, n_a, off_b, frac_b, t_b, n_b, pair, target, comp, s):
    """The fused kernel: one pass over the pixels. With ``pair``: target = B(px) and
    composite = A(px) on the mask, B(px) elsewhere; without: target is px itself (not
    written) and composite = A(px) on the mask, px elsewhere."""
    blend = s != _ONE
    for i in range(px.shape[0]):
        r, g, b = px[i, 0], px[i, 1], px[i, 2]
        if pair:
            _tetra(r, g, b, off_b, frac_b, t_b, n_b, target, i, s, blend)
        if mask[i]:
            _tetra(r, g, b, off_a, frac_a, t_a, n_a, comp, i, s, blend)
        elif pair:
            comp[i, 0], comp[i, 1], comp[i, 2] = target[i, 0], target[i, 1], target[i, 2]
        else:
            comp[i, 0], comp[i, 1], comp[i, 2] = r, g, b


def apply_u8(px: np.ndarray, lut, interpolation: str = "tetrahedral",
             out: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:
    """(M, 3) uint8 -> (M, 3) uint8 through ``lut`` (a ``tasks.synthesize.luts.Lut3D``), blended
    toward the input by ``strength`` (tetrahedral only) as ``composite_u8`` blends."""
    off, frac = lut.positions
    out = np.empty_like(px) if out is None else out
    if interpolation == "tetrahedral":
        _apply_tetra(px, off, frac, lut.flat_table, lut.size, out,
                     _ONE if strength == 1.0 else np.float32(strength))
    elif interpolation == "trilinear":
        _apply_trilinear(px, off, frac, lut.flat_table, lut.size, out)
    else:
        raise ValueError(f"unknown interpolation {interpolation!r}")
    return out


def composite_u8(img: np.ndarray, mask: np.ndarray, lut_a, lut_b=None,
                 strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One pass: (target, composite) for an H x W x 3 ``img`` and H x W bool ``mask``.

    With ``lut_b``: SSH-style pair, target = B(I). Without: target = I (``img`` itself).
    ``strength`` blends each LUT's output toward its input: I + s * (LUT(I) - I).
    """
    px = np.ascontiguousarray(img).reshape(-1, 3)
    flat_mask = np.ascontiguousarray(mask).reshape(-1)
    pair = lut_b is not None
    b = lut_b if pair else lut_a  # unused by the kernel without a pair
    (off_a, frac_a), (off_b, frac_b) = lut_a.positions, b.positions
    target = np.empty_like(px) if pair else px
    comp = np.empty_like(px)
    _composite(px, flat_mask, off_a, frac_a, lut_a.flat_table, lut_a.size, off_b, frac_b,
               b.flat_table, b.size, pair, target, comp, np.float32(strength))
    return target.reshape(img.shape), comp.reshape(img.shape)
