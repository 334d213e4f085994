"""CIEDE2000 on uint8 sRGB pixels and the composite-vs-target error sums, compiled.

sRGB (IEC 61966-2-1) -> XYZ (D65) -> CIELAB with the D65 white of the 2° observer,
then CIEDE2000 as in Sharma, Wu & Dalal (2005), k_L = k_C = k_H = 1. The powers, cube
roots and angles are ``tasks.core.fixedmath``'s, not numpy's or libm's: ΔE is stored in rows
and compared with the judge's thresholds, so it must not depend on the CPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tasks.core import fixedmath as fm

_JIT = {"cache": True, "nogil": True}
# sRGB decoding of each 8-bit code, computed once.
_LINEAR = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92,
                   fm.power_array((np.arange(256) / 255.0 + 0.055) / 1.055, 2.4))
_M = np.array([[0.4124564, 0.3575761, 0.1804375],
               [0.2126729, 0.7151522, 0.0721750],
               [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])
# Mean ΔE over at most this many evenly spaced foreground pixels: a fixed cost per
# sample, and the mean of thousands of pixels moves by well under 0.1.
DELTA_E_MAX_PIXELS = 1024


@njit(**_JIT)
def _f(t):
    return fm.cbrt(t) if t > 0.008856451679035631 else t / 0.12841854934601665 + 4.0 / 29.0


@njit(**_JIT)
def _lab(r, g, b, lin, m, white):
    R, G, B = lin[r], lin[g], lin[b]
    fx = _f((m[0, 0] * R + m[0, 1] * G + m[0, 2] * B) / white[0])
    fy = _f((m[1, 0] * R + m[1, 1] * G + m[1, 2] * B) / white[1])
    fz = _f((m[2, 0] * R + m[2, 1] * G + m[2, 2] * B) / white[2])
    return 116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)


@njit(**_JIT)
def _hypot(x, y):
    return math.sqrt(x * x + y * y)   # (a correctly rounded sqrt: the same on every CPU)


@njit(**_JIT)
def ciede2000(L1, a1, b1, L2, a2, b2):
    c_bar = 0.5 * (_hypot(a1, b1) + _hypot(a2, b2))
    c7 = c_bar ** 7
    g = 0.5 * (1.0 - math.sqrt(c7 / (c7 + 6103515625.0)))  # 25^7
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = _hypot(a1p, b1), _hypot(a2p, b2)
    h1p = fm.atan2(b1, a1p) % (2 * math.pi) if c1p > 0 else 0.0
    h2p = fm.atan2(b2, a2p) % (2 * math.pi) if c2p > 0 else 0.0
    dLp, dCp = L2 - L1, c2p - c1p
    if c1p * c2p == 0:
        dhp = 0.0
    else:
        dhp = h2p - h1p
        if dhp > math.pi:
            dhp -= 2 * math.pi
        elif dhp < -math.pi:
            dhp += 2 * math.pi
    dHp = 2.0 * math.sqrt(c1p * c2p) * fm.sin(dhp / 2.0)
    Lbar, Cbar = 0.5 * (L1 + L2), 0.5 * (c1p + c2p)
    if c1p * c2p == 0:
        hbar = h1p + h2p
    elif abs(h1p - h2p) <= math.pi:
        hbar = 0.5 * (h1p + h2p)
    elif h1p + h2p < 2 * math.pi:
        hbar = 0.5 * (h1p + h2p + 2 * math.pi)
    else:
        hbar = 0.5 * (h1p + h2p - 2 * math.pi)
    deg = math.pi / 180.0
    t = (1.0 - 0.17 * fm.cos(hbar - 30 * deg) + 0.24 * fm.cos(2 * hbar)
         + 0.32 * fm.cos(3 * hbar + 6 * deg) - 0.20 * fm.cos(4 * hbar - 63 * deg))
    dtheta = 30 * deg * fm.exp(-(((hbar / deg) - 275.0) / 25.0) ** 2)
    cb7 = Cbar ** 7
    rc = 2.0 * math.sqrt(cb7 / (cb7 + 6103515625.0))
    sl = 1.0 + 0.015 * (Lbar - 50) ** 2 / math.sqrt(20 + (Lbar - 50) ** 2)
    sc = 1.0 + 0.045 * Cbar
    sh = 1.0 + 0.015 * Cbar * t
    rt = -fm.sin(2 * dtheta) * rc
    x, y, z = dLp / sl, dCp / sc, dHp / sh
    return math.sqrt(x * x + y * y + z * z + rt * y * z)


@njit(**_JIT)
def delta_e_rows(lab1, lab2):
    """CIEDE2000 of each row pair of two (n, 3) CIELAB arrays."""
    out = np.empty(lab1.shape[0])
    for i in range(lab1.shape[0]):
        out[i] = ciede2000(lab1[i, 0], lab1[i, 1], lab1[i, 2], lab2[i, 0], lab2[i, 1], lab2[i, 2])
    return out


@njit(**_JIT)
def _errors(a, b, mask, stride, lin, m, white, with_de):
    # Squared errors in integers over flat bytes: a branch-free loop LLVM vectorizes.
    # (Exact: 255^2 * 3 * 2^20 pixels still fits an int64.)
    fa, fb = a.reshape(-1), b.reshape(-1)
    sse = 0
    for k in range(fa.shape[0]):
        e = np.int64(fa[k]) - np.int64(fb[k])
        sse += e * e
    sse_fg = 0
    n_fg = 0
    de_sum = 0.0
    de_n = 0
    for i in range(a.shape[0]):
        if mask[i]:
            for c in range(3):
                e = np.int64(a[i, c]) - np.int64(b[i, c])
                sse_fg += e * e
            if with_de and n_fg % stride == 0:
                L1, a1, b1 = _lab(a[i, 0], a[i, 1], a[i, 2], lin, m, white)
                L2, a2, b2 = _lab(b[i, 0], b[i, 1], b[i, 2], lin, m, white)
                de_sum += ciede2000(L1, a1, b1, L2, a2, b2)
                de_n += 1
            n_fg += 1
    return float(sse), float(sse_fg), n_fg, de_sum, de_n


def delta_e_stride(n_fg: int) -> int:
    """Every how many foreground pixels (raster order) the mean ΔE takes one."""
    return max(1, -(-int(n_fg) // DELTA_E_MAX_PIXELS))


def mean_delta_e(pred_px: np.ndarray, target_px: np.ndarray) -> float:
    """Mean CIEDE2000 of two (n, 3) uint8 pixel lists: on a region's pixels at
    ``delta_e_stride`` it is bit for bit ``error_sums``' ΔE (the same sum, in order)."""
    a, b = np.ascontiguousarray(pred_px), np.ascontiguousarray(target_px)
    _, _, _, de_sum, de_n = _errors(a, b, np.ones(len(a), np.bool_), 1, _LINEAR, _M, _WHITE, True)
    return de_sum / de_n if de_n else 0.0


def error_sums(pred: np.ndarray, target: np.ndarray, mask: np.ndarray,
               with_delta_e: bool = True) -> tuple[float, float, int, float]:
    """(sum of squared error over all pixels and channels, the same over the foreground,
    foreground pixel count, mean CIEDE2000 over (up to 1,024 of) the foreground; 0.0
    without ``with_delta_e``)."""
    a = np.ascontiguousarray(pred).reshape(-1, 3)
    b = np.ascontiguousarray(target).reshape(-1, 3)
    m = np.ascontiguousarray(mask).reshape(-1)
    stride = delta_e_stride(m.sum())
    sse, sse_fg, n_fg, de_sum, de_n = _errors(a, b, m, stride, _LINEAR, _M, _WHITE, with_delta_e)
    return sse, sse_fg, n_fg, (de_sum / de_n if de_n else 0.0)


@njit(**_JIT)
def _lab_many(px, lin, m, white, out):
    for i in range(px.shape[0]):
        out[i, 0], out[i, 1], out[i, 2] = _lab(px[i, 0], px[i, 1], px[i, 2], lin, m, white)


def srgb_to_lab(px: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) sRGB -> float64 (..., 3) CIELAB (D65)."""
    flat = np.ascontiguousarray(px, dtype=np.uint8).reshape(-1, 3)
    out = np.empty(flat.shape, np.float64)
    _lab_many(flat, _LINEAR, _M, _WHITE, out)
    return out.reshape(px.shape)
