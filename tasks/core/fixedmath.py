"""Transcendental functions whose bits do not depend on the CPU.

numpy computes ``log10``, ``power``, ``sin``, ``arctan2`` ... with SVML's AVX-512 loops
where the CPU has AVX-512 and with libm elsewhere, and glibc's libm picks other code for
CPUs with and without FMA: the same pixel gave another ΔE, PSNR or look table in the last
bit from one CPU kind to the next, and those values are stored in rows and compared with
the judge's thresholds. Here every function is range reduction plus a polynomial in
plain IEEE-754 additions, multiplications and divisions, compiled by numba without
fast-math (no fused multiply-add, no reordering), so each result is the same on every
x86-64 CPU. Accuracy: a few units in the last place (pow and exp10: about |y·log x|
units), far below anything stored or compared.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = {"cache": True, "nogil": True}

# ln 2 in two parts (fdlibm's): k * LN2_HI is exact for the |k| < 2^11 that occur.
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e+00
LN10 = 2.302585092994045684
INV_LN10 = 0.43429448190325182765
SQRT_HALF = 0.70710678118654752440
# pi/2 in three parts (fdlibm's): k * PIO2_1 is exact for |k| < 2^20.
PIO2_1 = 1.57079632673412561417e+00
PIO2_1T = 6.07710050650619224932e-11
TWO_OVER_PI = 6.36619772367581382433e-01
PI = 3.141592653589793116
PI_2 = 1.570796326794896558
PI_4 = 0.785398163397448279
TAN_PI_8 = 0.41421356237309503
# Past these exp overflows / underflows to zero.
EXP_MAX, EXP_MIN = 709.782712893384, -745.1332191019412
# sin/cos reduce by pi/2 exactly only up to here (|k| < 2^20); every angle used is far below.
TRIG_MAX = 1.0e6


@njit(**_JIT)
def _exp_reduced(r):
    # exp(r) for |r| <= ln2/2 by its Taylor series to r^13 (the rest < 4e-18 relative).
    p = 1.0 / 6227020800.0
    p = 1.0 / 479001600.0 + r * p
    p = 1.0 / 39916800.0 + r * p
    p = 1.0 / 3628800.0 + r * p
    p = 1.0 / 362880.0 + r * p
    p = 1.0 / 40320.0 + r * p
    p = 1.0 / 5040.0 + r * p
    p = 1.0 / 720.0 + r * p
    p = 1.0 / 120.0 + r * p
    p = 1.0 / 24.0 + r * p
    p = 1.0 / 6.0 + r * p
    p = 0.5 + r * p
    return 1.0 + r * (1.0 + r * p)


@njit(**_JIT)
def exp(x):
    if x != x:
        return x
    if x > EXP_MAX:
        return math.inf
    if x < EXP_MIN:
        return 0.0
    k = float(math.floor(x * INV_LN2 + 0.5))
    r = (x - k * LN2_HI) - k * LN2_LO
    return math.ldexp(_exp_reduced(r), int(k))


@njit(**_JIT)
def log(x):
    if x != x or x == math.inf:
        return x
    if x <= 0.0:
        return -math.inf if x == 0.0 else math.nan
    m, e = math.frexp(x)   # x = m * 2^e, m in [0.5, 1)
    if m < SQRT_HALF:
        m *= 2.0
        e -= 1
    f = m - 1.0            # exact; |f| < 0.42
    s = f / (2.0 + f)      # log(1+f) = 2 atanh(s), |s| < 0.172
    z = s * s
    # R = 2z/3 + 2z^2/5 + ... (to z^12: the rest < 1e-19)
    q = 2.0 / 25.0
    for n in range(11, 0, -1):
        q = 2.0 / (2 * n + 1) + z * q
    r = z * q
    # log(1+f) = 2s + s*R = f - s*(f - R): f exact, the correction small.
    ek = float(e)
    return ek * LN2_HI + (f - (s * (f - r) - ek * LN2_LO))


@njit(**_JIT)
def log10(x):
    return log(x) * INV_LN10


@njit(**_JIT)
def pow(x, y):   # noqa: A001 - the name of the function it replaces
    """x ** y for x >= 0 (every use here raises non-negative values)."""
    if x == 0.0:
        return 0.0 if y > 0 else (1.0 if y == 0 else math.inf)
    if x < 0.0 or x != x:
        return math.nan
    return exp(y * log(x))


@njit(**_JIT)
def exp10(x):
    return exp(x * LN10)


# cbrt(m) for m in [0.5, 1) to 1.2e-3 (relative): a least-squares quadratic, the start
# for the iterations below.
_CBRT_P = (0.49598127, 0.69143406, -0.18828399)
_CBRT_2, _CBRT_4 = 1.2599210498948732, 1.5874010519681994   # 2^(1/3), 4^(1/3)


@njit(**_JIT)
def cbrt(x):
    """Cube root to within an ulp. x = m 2^(3q+r) with m in [0.5, 1): the root of m 2^r
    (exact) from a quadratic start, one Halley step (error cubed: ~2e-9) and one Newton
    step (squared: below an ulp), times 2^q (exact). A third of exp(log(x) / 3)'s cost:
    CIELAB takes three per pixel and the judge's ΔE thousands of pixels per draw."""
    if x == 0.0 or x != x or abs(x) == math.inf:
        return x
    m, e = math.frexp(abs(x))
    q = e // 3
    r = e - 3 * q
    y = _CBRT_P[0] + m * (_CBRT_P[1] + m * _CBRT_P[2])
    if r == 1:
        m, y = 2.0 * m, y * _CBRT_2
    elif r == 2:
        m, y = 4.0 * m, y * _CBRT_4
    y3 = y * y * y
    y = y * (y3 + 2.0 * m) / (2.0 * y3 + m)
    y = y - (y * y * y - m) / (3.0 * y * y)
    y = math.ldexp(y, q)
    return y if x > 0 else -y


# Taylor coefficients 1/3!, 1/5!, ... 1/17! (sine) and 1/2!, 1/4!, ... 1/18! (cosine).
_SIN_C = tuple(1.0 / math.factorial(n) for n in range(3, 19, 2))
_COS_C = tuple(1.0 / math.factorial(n) for n in range(2, 19, 2))


@njit(**_JIT)
def _sin_reduced(r):
    # sin r = r - r z (1/3! - z (1/5! - z (...))), z = r^2, |r| <= pi/4 (the rest < 1e-19)
    z = r * r
    p = _SIN_C[7]
    for i in range(6, -1, -1):
        p = _SIN_C[i] - z * p
    return r - r * z * p


@njit(**_JIT)
def _cos_reduced(r):
    # cos r = 1 - z (1/2! - z (1/4! - z (...)))
    z = r * r
    p = _COS_C[8]
    for i in range(7, -1, -1):
        p = _COS_C[i] - z * p
    return 1.0 - z * p


@njit(**_JIT)
def _quadrant(x):
    k = float(math.floor(x * TWO_OVER_PI + 0.5))
    return (x - k * PIO2_1) - k * PIO2_1T, int(k) & 3


@njit(**_JIT)
def _sin_of(r, q):
    # sin(r + q pi/2) for the reduced r
    if q == 0:
        return _sin_reduced(r)
    if q == 1:
        return _cos_reduced(r)
    if q == 2:
        return -_sin_reduced(r)
    return -_cos_reduced(r)


@njit(**_JIT)
def sin(x):
    if x != x or abs(x) > TRIG_MAX:
        return math.nan
    r, q = _quadrant(x)
    return _sin_of(r, q)


@njit(**_JIT)
def cos(x):
    # cos x = sin(x + pi/2): one quadrant on
    if x != x or abs(x) > TRIG_MAX:
        return math.nan
    r, q = _quadrant(x)
    return _sin_of(r, (q + 1) & 3)


@njit(**_JIT)
def _atan_series(u):
    # atan(u) for |u| <= tan(pi/8) by its series to u^49 (the rest < 1e-20).
    z = u * u
    p = 1.0 / 51.0
    for n in range(24, 0, -1):
        p = 1.0 / (2 * n + 1) - z * p
    return u - u * z * p


@njit(**_JIT)
def atan2(y, x):
    if x != x or y != y:
        return math.nan
    ax, ay = abs(x), abs(y)
    if ax == 0.0 and ay == 0.0:
        a = 0.0
    else:
        swap = ay > ax
        t = ax / ay if swap else ay / ax            # in [0, 1]
        if t > TAN_PI_8:
            a = PI_4 + _atan_series((t - 1.0) / (t + 1.0))
        else:
            a = _atan_series(t)
        if swap:
            a = PI_2 - a
    if x < 0.0 or (x == 0.0 and math.copysign(1.0, x) < 0.0):
        a = PI - a
    return -a if (y < 0.0 or (y == 0.0 and math.copysign(1.0, y) < 0.0)) else a


# --- arrays (any shape, float64 out) ---------------------------------------------------

@njit(**_JIT)
def _map1(x, kind, c, out):
    for i in range(x.size):
        v = x[i]
        if kind == 0:
            out[i] = pow(v, c)
        elif kind == 1:
            out[i] = log10(v)
        elif kind == 2:
            out[i] = exp10(v)
        else:
            out[i] = sin(v)


def _apply(x, kind: int, c: float = 0.0) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty(flat.shape, np.float64)
    _map1(flat, kind, float(c), out)
    return out.reshape(a.shape)


def power_array(x, y: float) -> np.ndarray:
    """x ** y elementwise (x >= 0; a scalar exponent)."""
    return _apply(x, 0, y)


def log10_array(x) -> np.ndarray:
    return _apply(x, 1)


def exp10_array(x) -> np.ndarray:
    """10 ** x elementwise."""
    return _apply(x, 2)


def sin_array(x) -> np.ndarray:
    return _apply(x, 3)


@njit(**_JIT)
def _atan2_many(y, x, out):
    for i in range(y.size):
        out[i] = atan2(y[i], x[i])


def atan2_array(y, x) -> np.ndarray:
    yy, xx = np.broadcast_arrays(np.asarray(y, np.float64), np.asarray(x, np.float64))
    out = np.empty(yy.size, np.float64)
    _atan2_many(np.ascontiguousarray(yy).reshape(-1), np.ascontiguousarray(xx).reshape(-1), out)
    return out.reshape(yy.shape)
