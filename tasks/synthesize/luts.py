"""3D LUTs: the table type, .cube read/write (Adobe 1.0 and Resolve), application.

A ``Lut3D`` is an optional per-channel 1D shaper followed by a 3D table:

- ``table``: float32 (N, N, N, 3) indexed ``[r, g, b]`` over ``domain_min..domain_max``;
- ``shaper``: float32 (M, 3) over ``shaper_min..shaper_max``, or None.

A 1D-only file becomes a shaper in front of the size-2 identity cube (exact under both
interpolations). A .cube file lists entries with red changing fastest, so its rows
reshape to ``[b, g, r]`` and are transposed once on read.

Application to uint8 images goes through ``positions()``: for each channel and each of
the 256 input codes it precomputes the lattice cell and fraction (domain, shaper and
input range folded in), so the per-pixel kernel in ``lut_kernels`` only interpolates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

Triple = tuple[float, float, float]
KEYWORDS = ("TITLE", "DOMAIN_MIN", "DOMAIN_MAX", "LUT_1D_SIZE", "LUT_3D_SIZE",
            "LUT_1D_INPUT_RANGE", "LUT_3D_INPUT_RANGE")


class CubeError(ValueError):
    """A .cube file that breaks the format; the message names file and line."""


@dataclass(frozen=True, eq=False)
class Lut3D:
    table: np.ndarray
    title: str = ""
    domain_min: Triple = (0.0, 0.0, 0.0)
    domain_max: Triple = (1.0, 1.0, 1.0)
    shaper: np.ndarray | None = None
    shaper_min: Triple = (0.0, 0.0, 0.0)
    shaper_max: Triple = (1.0, 1.0, 1.0)
    # Keywords we did not recognise (vendor extensions): kept for `luts check`.
    ignored_keywords: tuple[str, ...] = field(default=())

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
        """Move the 3D table toward identity: 0 gives identity, 1 this LUT. (Synthesis
        blends outputs in the kernel instead: no new table per sample.)"""
        ident = Lut3D.identity(self.size).table
        lo, hi = np.asarray(self.domain_min, np.float32), np.asarray(self.domain_max, np.float32)
        ident = lo + ident * (hi - lo)  # identity over this LUT's own domain
        table = ident + np.float32(strength) * (self.table - ident)
        return Lut3D(table, self.title, self.domain_min, self.domain_max, self.shaper,
                     self.shaper_min, self.shaper_max)

    @cached_property
    def content_digest(self) -> str:
        """What this LUT does, as a short hash (library versions hash these)."""
        return hashlib.sha256(self.content_key()).hexdigest()[:16]

    def content_key(self) -> bytes:
        """Bytes that identify what this LUT does."""
        parts = [np.asarray(self.domain_min + self.domain_max, np.float32).tobytes(),
                 np.round(self.table, 5).astype(np.float32).tobytes()]
        if self.shaper is not None:
            parts += [np.asarray(self.shaper_min + self.shaper_max, np.float32).tobytes(),
                      np.round(self.shaper, 5).astype(np.float32).tobytes()]
        return b"".join(parts)

    @cached_property
    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel and uint8 code: the cell's offset in ``flat_table`` and the fraction."""
        return positions(self)

    @cached_property
    def flat_table(self) -> np.ndarray:
        """The table as one contiguous float32 run, [r, g, b, channel] order."""
        return np.ascontiguousarray(self.table, dtype=np.float32).reshape(-1)

    def apply(self, rgb: np.ndarray, interpolation: str = "tetrahedral") -> np.ndarray:
        """uint8 (..., 3) -> uint8 (..., 3); values outside [0, 1] clamp after lookup."""
        from tasks.synthesize.lut_kernels import apply_u8

        if rgb.dtype != np.uint8 or rgb.ndim < 1 or rgb.shape[-1] != 3:
            raise ValueError(f"expected a uint8 (..., 3) image, got {rgb.dtype} {rgb.shape}")
        flat = np.ascontiguousarray(rgb).reshape(-1, 3)
        return apply_u8(flat, self, interpolation).reshape(rgb.shape)

    def apply_float(self, x: np.ndarray, interpolation: str = "tetrahedral") -> np.ndarray:
        """(M, 3) floats -> (M, 3) floats, unclamped (NumPy; for tests and tools)."""
        base, frac = _cells(self, np.asarray(x, np.float64))
        return _interpolate(self.table.reshape(-1, 3).astype(np.float64), self.size, base, frac,
                            interpolation)


def _cells(lut: Lut3D, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) inputs -> lattice cell (M, 3 ints) and fraction within it, after the
    shaper and the domain mapping (inputs outside the domain clamp to its edge)."""
    if lut.shaper is not None:
        x = _apply_shaper(lut, x)
    n = lut.size
    lo, hi = np.asarray(lut.domain_min), np.asarray(lut.domain_max)
    pos = np.clip((x - lo) / (hi - lo), 0.0, 1.0) * (n - 1)
    base = np.minimum(pos.astype(np.int64), n - 2)
    return base, pos - base


def _apply_shaper(lut: Lut3D, x: np.ndarray) -> np.ndarray:
    m = lut.shaper.shape[0]
    out = np.empty_like(x)
    for c in range(3):
        lo, hi = lut.shaper_min[c], lut.shaper_max[c]
        t = np.clip((x[:, c] - lo) / (hi - lo), 0.0, 1.0) * (m - 1)
        out[:, c] = np.interp(t, np.arange(m), lut.shaper[:, c].astype(np.float64))
    return out


def _interpolate(table: np.ndarray, n: int, base: np.ndarray, frac: np.ndarray,
                 interpolation: str) -> np.ndarray:
    strides = np.array([n * n, n, 1])
    idx0 = base @ strides
    if interpolation == "trilinear":
        out = np.zeros((len(base), 3))
        for corner in range(8):
            bits = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
            w = np.prod(np.where(bits, frac, 1.0 - frac), axis=1, keepdims=True)
            out += w * table[idx0 + bits @ strides]
        return out
    if interpolation != "tetrahedral":
        raise ValueError(f"unknown interpolation {interpolation!r}")
    # Walk from the base corner toward the far one along axes in order of decreasing
    # fraction; the weights are the successive differences of the sorted fractions.
    order = np.argsort(-frac, axis=1, kind="stable")
    f = np.take_along_axis(frac, order, axis=1)
    step = strides[order]
    i1 = idx0 + step[:, 0]
    i2 = i1 + step[:, 1]
    i3 = i2 + step[:, 2]
    return ((1 - f[:, :1]) * table[idx0] + (f[:, :1] - f[:, 1:2]) * table[i1]
            + (f[:, 1:2] - f[:, 2:]) * table[i2] + f[:, 2:] * table[i3])


def positions(lut: Lut3D) -> tuple[np.ndarray, np.ndarray]:
    """Per channel and uint8 code: offset of the lattice cell in the flat table (int64
    (3, 256), strides folded in) and the fraction within it (float32 (3, 256))."""
    codes = np.repeat((np.arange(256, dtype=np.float64) / 255.0)[:, None], 3, axis=1)
    base, frac = _cells(lut, codes)
    n = lut.size
    strides = np.array([n * n * 3, n * 3, 3], dtype=np.int64)
    return (np.ascontiguousarray((base * strides).T),
            np.ascontiguousarray(frac.T, dtype=np.float32))


# --- .cube reading ---------------------------------------------------------------------

def read_cube(path: str | Path) -> Lut3D:
    """Read an Adobe Cube 1.0 or Resolve .cube file (1D, 3D, or 1D shaper + 3D)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CubeError(f"{path}: cannot read: {exc}") from None
    # Comments in the wild carry non-UTF-8 bytes; latin-1 decodes any byte.
    lines = raw.decode("latin-1").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    seen: dict[str, int] = {}
    values: dict[str, object] = {"TITLE": ""}
    ignored: list[str] = []
    rows: list[tuple[float, float, float]] = []
    first_data_line = None
    for lineno, raw_line in enumerate(lines, 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split(None, 1)[0]
        if key[0].isalpha():
            if first_data_line is not None:
                raise CubeError(f"{path}:{lineno}: keyword {key} after the table data "
                                f"(which started on line {first_data_line})")
            if key in seen:
                raise CubeError(f"{path}:{lineno}: {key} repeated (first on line {seen[key]})")
            seen[key] = lineno
            rest = line[len(key):].strip()
            if key not in KEYWORDS:
                ignored.append(key)
            else:
                values[key] = _keyword_value(key, rest, path, lineno)
            continue
        if first_data_line is None:
            first_data_line = lineno
        rows.append(_floats(line.split("#", 1)[0].split(), path, lineno, 3))
    return _assemble(path, values, rows, tuple(ignored))


def _keyword_value(key: str, rest: str, path: Path, lineno: int):
    if key == "TITLE":
        if len(rest) >= 2 and rest[0] == '"' and rest.rfind('"') > 0:
            return rest[1:rest.rfind('"')]
        raise CubeError(f"{path}:{lineno}: TITLE needs a quoted string")
    if key in ("LUT_1D_SIZE", "LUT_3D_SIZE"):
        try:
            size = int(rest.split("#", 1)[0])
        except ValueError:
            raise CubeError(f"{path}:{lineno}: {key} {rest!r} is not an integer") from None
        limit = 65536 if key == "LUT_1D_SIZE" else 256
        if not 2 <= size <= limit:
            raise CubeError(f"{path}:{lineno}: {key} {size} outside 2..{limit}")
        return size
    n = 2 if key.endswith("INPUT_RANGE") else 3
    return _floats(rest.split("#", 1)[0].split(), path, lineno, n)


def _assemble(path: Path, kv: dict, rows: list, ignored: tuple[str, ...]) -> Lut3D:
    size1, size3 = kv.get("LUT_1D_SIZE"), kv.get("LUT_3D_SIZE")
    if size1 is None and size3 is None:
        raise CubeError(f"{path}: no LUT_1D_SIZE or LUT_3D_SIZE")
    expected = (size1 or 0) + (size3 or 0) ** 3
    if len(rows) != expected:
        detail = " + ".join(p for p in (size1 and f"{size1} (1D)", size3 and f"{size3}^3 (3D)") if p)
        raise CubeError(f"{path}: {len(rows)} data lines, expected {expected} = {detail}")
    domain = (kv.get("DOMAIN_MIN", (0.0, 0.0, 0.0)), kv.get("DOMAIN_MAX", (1.0, 1.0, 1.0)))
    for lo, hi in zip(*domain):
        if lo >= hi:
            raise CubeError(f"{path}: DOMAIN_MIN {domain[0]} must be below DOMAIN_MAX {domain[1]}")

    def input_range(key: str, fallback):
        if key not in kv:
            return fallback
        lo, hi = kv[key]
        if lo >= hi:
            raise CubeError(f"{path}: {key} min {lo} must be below max {hi}")
        return (lo, lo, lo), (hi, hi, hi)

    data = np.asarray(rows, np.float32).reshape(-1, 3)
    identity_domain = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    shaper, s_dom = None, identity_domain
    if size1:
        shaper = np.ascontiguousarray(data[:size1])
        # DOMAIN_* belongs to the first table of the file: the 1D one when present.
        s_dom = input_range("LUT_1D_INPUT_RANGE", domain)
    if size3:
        cube = data[size1 or 0:].reshape(size3, size3, size3, 3).transpose(2, 1, 0, 3)
        t_dom = input_range("LUT_3D_INPUT_RANGE", identity_domain if size1 else domain)
    else:
        cube, t_dom = Lut3D.identity(2).table, identity_domain
    return Lut3D(np.ascontiguousarray(cube), kv["TITLE"], t_dom[0], t_dom[1], shaper,
                 s_dom[0], s_dom[1], ignored)


def _floats(parts: list[str], path: Path, lineno: int, n: int) -> tuple:
    if len(parts) != n:
        raise CubeError(f"{path}:{lineno}: expected {n} numbers, got {len(parts)}")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise CubeError(f"{path}:{lineno}: non-numeric value in {' '.join(parts)!r}") from None
    if not all(np.isfinite(vals)):
        raise CubeError(f"{path}:{lineno}: NaN or infinite value")
    return vals


# --- .cube writing ---------------------------------------------------------------------

def write_cube(lut: Lut3D, path: str | Path) -> None:
    """Write a .cube atomically: Adobe 1.0 keywords for a plain 3D LUT, Resolve's
    shaper + 3D layout (with *_INPUT_RANGE) when the LUT has a 1D shaper."""
    from tasks.core.files import write_bytes_atomic

    write_bytes_atomic(Path(path), cube_bytes(lut, path))


def cube_bytes(lut: Lut3D, path: str | Path = "<memory>") -> bytes:
    """The .cube text of ``lut`` (deterministic: same table, same bytes)."""
    lines = [f'TITLE "{lut.title}"'] if lut.title else []
    default_domain = (lut.domain_min, lut.domain_max) == ((0.0,) * 3, (1.0,) * 3)
    if (lut.shaper is not None and lut.size == 2 and default_domain
            and np.array_equal(lut.table, Lut3D.identity(2).table)):
        # A 1D LUT read from a 1D file: write it back as one (Adobe keywords).
        lines.append(f"LUT_1D_SIZE {lut.shaper.shape[0]}")
        lines.append("DOMAIN_MIN " + " ".join(_num(v) for v in lut.shaper_min))
        lines.append("DOMAIN_MAX " + " ".join(_num(v) for v in lut.shaper_max))
        lines.append(_rows(lut.shaper))
        return ("\n".join(lines) + "\n").encode()
    if lut.shaper is None:
        lines.append(f"LUT_3D_SIZE {lut.size}")
        if not default_domain:
            lines.append("DOMAIN_MIN " + " ".join(_num(v) for v in lut.domain_min))
            lines.append("DOMAIN_MAX " + " ".join(_num(v) for v in lut.domain_max))
    else:
        lines += [f"LUT_1D_SIZE {lut.shaper.shape[0]}",
                  f"LUT_1D_INPUT_RANGE {_uniform(lut.shaper_min, lut.shaper_max, path)}",
                  f"LUT_3D_SIZE {lut.size}",
                  f"LUT_3D_INPUT_RANGE {_uniform(lut.domain_min, lut.domain_max, path)}"]
        lines.append(_rows(lut.shaper))
    lines.append(_rows(lut.table.transpose(2, 1, 0, 3).reshape(-1, 3)))
    return ("\n".join(lines) + "\n").encode()


# Every number this module writes to a .cube file: 7 significant digits (one format for
# the single values of the header and the table's rows alike).
_NUM = "%.7g"


def _num(v: float) -> str:
    return _NUM % float(v)


def _rows(values: np.ndarray) -> str:
    """(M, 3) numbers as M lines of ``_num`` values, in one formatting call (a 33^3
    table is 108k numbers: 4x faster than one f-string each)."""
    return (f"{_NUM} {_NUM} {_NUM}\n" * len(values) % tuple(np.asarray(values).ravel().tolist()))[:-1]


def _uniform(lo: Triple, hi: Triple, path) -> str:
    if len(set(lo)) != 1 or len(set(hi)) != 1:
        raise CubeError(f"{path}: Resolve input ranges are one min/max for all channels; "
                        f"got {lo}..{hi}")
    return f"{_num(lo[0])} {_num(hi[0])}"
