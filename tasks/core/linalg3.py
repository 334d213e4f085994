"""Small linear algebra in plain IEEE arithmetic: the same bits on every x86-64 CPU.

numpy's ``@``, ``np.dot``, ``np.cov`` and ``np.linalg`` call OpenBLAS/LAPACK, which picks
its kernels per CPU (Haswell, SkylakeX, Zen, ...); they sum in other orders and fuse
multiply-adds, so the last bits of a product differ between CPU kinds. Pitié's IDT
magnifies them (a value lands on the other side of a histogram edge; regrain's solver
stops one iteration sooner), and shards built on an Intel and an AMD machine differed.
numpy's elementwise ufuncs (+ - * / sqrt) round every operation as IEEE 754 says on any
CPU, numpy's sums add in an order fixed by its code, and Python floats and numba loops
without fastmath do the same: these helpers use nothing else.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _apply(x, m, out):
    # Without fastmath numba fuses no multiply-add: each product and sum rounds on its
    # own, as numpy's ufuncs do (checked bit for bit against them in the tests).
    for n in range(x.shape[0]):
        x0, x1, x2 = x[n, 0], x[n, 1], x[n, 2]
        for i in range(3):
            out[n, i] = x0 * m[i, 0] + x1 * m[i, 1] + x2 * m[i, 2]
    return out


def apply(x: np.ndarray, m) -> np.ndarray:
    """``x @ m.T`` for colours ``x`` (N, 3) and a 3x3 ``m`` (compiled: numpy's broadcast
    form of the same sums took 12x as long as BLAS, this half as long)."""
    x = np.ascontiguousarray(x, np.float64)
    return _apply(x, np.ascontiguousarray(m, np.float64), np.empty((len(x), 3)))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """The inner product of two vectors (numpy's pairwise sum of their products)."""
    return float(np.add.reduce(a * b))


def norm(v) -> float:
    """The length of a short vector (a mean colour, a difference of two), in Python floats."""
    return math.sqrt(sum(float(x) * float(x) for x in v))


def matmul(a, b) -> np.ndarray:
    """The product of two 3x3 matrices."""
    a, b = np.asarray(a, np.float64).tolist(), np.asarray(b, np.float64).tolist()
    return np.array([[a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)]
                     for i in range(3)])


def inv(m) -> np.ndarray:
    """The inverse of a 3x3 matrix (adjugate over determinant)."""
    (a, b, c), (d, e, f), (g, h, i) = np.asarray(m, np.float64).tolist()
    co = [[e * i - f * h, c * h - b * i, b * f - c * e],
          [f * g - d * i, a * i - c * g, c * d - a * f],
          [d * h - e * g, b * g - a * h, a * e - b * d]]
    det = a * co[0][0] + b * co[1][0] + c * co[2][0]
    if det == 0.0:
        raise np.linalg.LinAlgError("singular 3x3 matrix")
    return np.array(co) / det


def cov(x: np.ndarray) -> np.ndarray:
    """The 3x3 sample covariance of colours ``x`` (N, 3), as ``np.cov(x, rowvar=False)``."""
    d = x - x.mean(axis=0)
    cols = [np.ascontiguousarray(d[:, k]) for k in range(3)]
    c = np.empty((3, 3))
    for i in range(3):
        for j in range(i, 3):
            c[i, j] = c[j, i] = dot(cols[i], cols[j]) / (len(x) - 1)
    return c


def rotation(a) -> np.ndarray:
    """Q of the QR factorisation of a 3x3 ``a`` by Householder reflections, with LAPACK's
    signs (``np.linalg.qr(a)[0]`` up to rounding): R's diagonal opposes each pivot's sign."""
    r = np.asarray(a, np.float64).tolist()
    reflections = []
    for k in range(2):                    # the last column needs no reflection (tau = 0)
        alpha, tail = r[k][k], [r[i][k] for i in range(k + 1, 3)]
        norm2 = sum(t * t for t in tail)
        if norm2 == 0.0:
            continue
        beta = -math.copysign(math.sqrt(alpha * alpha + norm2), alpha)
        scale = 1.0 / (alpha - beta)
        v = [1.0] + [t * scale for t in tail]
        tau = (beta - alpha) / beta
        reflections.append((k, v, tau))
        for j in range(k, 3):             # r <- (I - tau v v^T) r, rows k..2
            w = tau * sum(v[i - k] * r[i][j] for i in range(k, 3))
            for i in range(k, 3):
                r[i][j] -= v[i - k] * w
    q = [[float(i == j) for j in range(3)] for i in range(3)]
    for k, v, tau in reversed(reflections):   # Q = H0 H1 I
        for j in range(3):
            w = tau * sum(v[i - k] * q[i][j] for i in range(k, 3))
            for i in range(k, 3):
                q[i][j] -= v[i - k] * w
    return np.array(q)
