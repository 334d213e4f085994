"""3D LUTs: the table type, interpolation on uint8 images, and .cube read/write.

Tables are float32 arrays of shape (N, N, N, 3) indexed ``[r, g, b]`` over the domain
[domain_min, domain_max]. A .cube file lists entries with red changing fastest, so a
file's rows reshape to ``[b, g, r]`` and are transposed once on read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CubeError(ValueError):
    """A .cube file that breaks the format; the message names file and line."""


@dataclass(frozen=True, eq=False)
class Lut3D:
    table: np.ndarray                      # (N, N, N, 3) float32, indexed [r, g, b]
    title: str = ""
    domain_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    domain_max: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def size(self) -> int:
        return self.table.shape[0]

    @classmethod
    def identity(cls, size: int = 33) -> "Lut3D":
        axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
        r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
        return cls(np.stack([r, g, b], axis=-1))

    @classmethod
    def from_function(cls, fn, size: int = 33, title: str = "") -> "Lut3D":
        """Sample ``fn`` (an (M, 3) float array in [0, 1] -> (M, 3)) on the lattice."""
        grid = cls.identity(size).table.reshape(-1, 3)
        out = np.asarray(fn(grid.astype(np.float64)), dtype=np.float32)
        return cls(out.reshape(size, size, size, 3), title=title)

    def blend(self, strength: float) -> "Lut3D":
        """Move toward identity: 0 gives identity, 1 this LUT."""
        ident = Lut3D.identity(self.size).table
        table = ident + np.float32(strength) * (self.table - ident)
        return Lut3D(table, self.title, self.domain_min, self.domain_max)

    def apply(self, rgb: np.ndarray, interpolation: str = "tetrahedral") -> np.ndarray:
        """uint8 (..., 3) -> uint8 (..., 3); values outside [0, 1] clamp after lookup."""
        if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
            raise ValueError(f"expected a uint8 (..., 3) image, got {rgb.dtype} {rgb.shape}")
        flat = rgb.reshape(-1, 3)
        out = apply_float(self, flat.astype(np.float32) / 255.0, interpolation)
        return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(rgb.shape)


def apply_float(lut: Lut3D, x: np.ndarray, interpolation: str = "tetrahedral") -> np.ndarray:
    """(M, 3) floats in [0, 1] -> (M, 3) floats, unclamped."""
    n = lut.size
    lo = np.asarray(lut.domain_min, np.float32)
    hi = np.asarray(lut.domain_max, np.float32)
    pos = np.clip((x - lo) / (hi - lo), 0.0, 1.0) * (n - 1)
    base = np.minimum(pos.astype(np.int32), n - 2)
    frac = (pos - base).astype(np.float32)
    table = lut.table.reshape(-1, 3)
    strides = np.array([n * n, n, 1], np.int32)
    idx0 = base @ strides
    if interpolation == "trilinear":
        out = np.zeros_like(x, dtype=np.float32)
        for corner in range(8):
            bits = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1], np.int32)
            w = np.prod(np.where(bits, frac, 1.0 - frac), axis=1, keepdims=True)
            out += w * table[idx0 + bits @ strides]
        return out
    if interpolation != "tetrahedral":
        raise ValueError(f"unknown interpolation {interpolation!r}")
    # Walk from the base corner toward the far corner along axes in order of
    # decreasing fractional part; weights are the successive differences.
    order = np.argsort(-frac, axis=1, kind="stable")
    f_sorted = np.take_along_axis(frac, order, axis=1)
    step = strides[order]
    idx1 = idx0 + step[:, 0]
    idx2 = idx1 + step[:, 1]
    idx3 = idx2 + step[:, 2]
    f1, f2, f3 = f_sorted[:, :1], f_sorted[:, 1:2], f_sorted[:, 2:3]
    return ((1.0 - f1) * table[idx0] + (f1 - f2) * table[idx1]
            + (f2 - f3) * table[idx2] + f3 * table[idx3])


def write_cube(lut: Lut3D, path: str | Path) -> None:
    """Write an Adobe 1.0 .cube (3D only), red fastest; atomic via a temporary name."""
    path = Path(path)
    n = lut.size
    lines = []
    if lut.title:
        lines.append(f'TITLE "{lut.title}"')
    lines.append(f"LUT_3D_SIZE {n}")
    if lut.domain_min != (0.0, 0.0, 0.0) or lut.domain_max != (1.0, 1.0, 1.0):
        lines.append("DOMAIN_MIN " + " ".join(f"{v:.6f}" for v in lut.domain_min))
        lines.append("DOMAIN_MAX " + " ".join(f"{v:.6f}" for v in lut.domain_max))
    rows = lut.table.transpose(2, 1, 0, 3).reshape(-1, 3)
    lines.extend(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def read_cube(path: str | Path) -> Lut3D:
    """Read a .cube file's 3D table (TITLE, DOMAIN_MIN/MAX, LUT_3D_SIZE, comments)."""
    path = Path(path)
    text = path.read_bytes().decode("latin-1")
    size, title = None, ""
    dmin, dmax = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    values: list[list[float]] = []
    for lineno, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, rest = line.partition(" ")
        if key == "TITLE":
            title = rest.strip().strip('"')
        elif key == "LUT_3D_SIZE":
            try:
                size = int(rest)
            except ValueError:
                raise CubeError(f"{path}:{lineno}: LUT_3D_SIZE is not an integer") from None
            if not 2 <= size <= 256:
                raise CubeError(f"{path}:{lineno}: LUT_3D_SIZE {size} outside 2..256")
        elif key in ("DOMAIN_MIN", "DOMAIN_MAX"):
            triple = _floats(rest.split(), path, lineno)
            if key == "DOMAIN_MIN":
                dmin = triple
            else:
                dmax = triple
        elif key[0].isalpha():
            raise CubeError(f"{path}:{lineno}: unsupported keyword {key!r}")
        else:
            values.append(list(_floats(line.split(), path, lineno)))
    if size is None:
        raise CubeError(f"{path}: no LUT_3D_SIZE")
    if len(values) != size ** 3:
        raise CubeError(f"{path}: {len(values)} data lines, expected {size ** 3} for size {size}")
    if any(lo >= hi for lo, hi in zip(dmin, dmax)):
        raise CubeError(f"{path}: DOMAIN_MIN must be below DOMAIN_MAX")
    table = np.asarray(values, np.float32).reshape(size, size, size, 3).transpose(2, 1, 0, 3)
    return Lut3D(np.ascontiguousarray(table), title, dmin, dmax)


def _floats(parts: list[str], path: Path, lineno: int) -> tuple[float, float, float]:
    if len(parts) != 3:
        raise CubeError(f"{path}:{lineno}: expected 3 numbers, got {len(parts)}")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise CubeError(f"{path}:{lineno}: non-numeric value in {' '.join(parts)!r}") from None
    if not all(np.isfinite(vals)):
        raise CubeError(f"{path}:{lineno}: NaN or infinite value")
    return vals  # type: ignore[return-value]
