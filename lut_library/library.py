"""The LUT library a build uses: built-in looks plus users' .cube folders.

User LUTs join by config, de-duplicated by content; near-duplicates (mean ΔE2000 on a
colour chart below a threshold) are flagged; technical LUTs (log-to-Rec.709 and the
like, which are conversions rather than looks) can be excluded.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lut_library.looks import LOOKS, builtin_luts
from tasks.core.fixedmath import atan2_array
from tasks.synthesize.colorimetry import delta_e_rows, srgb_to_lab
from tasks.synthesize.luts import CubeError, Lut3D, read_cube

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
GENERATED = HERE / "generated"
# Names that say "conversion, not look" in the wild.
TECHNICAL_NAME = re.compile(r"(log|slog|s-log|logc|clog|vlog|rec\.?709|to[_ -]?709|aces|"
                            r"rec\.?2020|lin(ear)?[_ -]?to|cineon)", re.I)


# The 24 patches of the X-Rite ColorChecker (colour-science's "ColorChecker24 - After
# November 2014" xyY data, under D50, Bradford-adapted to sRGB's D65 white), as sRGB
# uint8. Written out: deriving them imports colour-science (~1.5 s) in every process
# that filters looks; tests/test_lut_library.py derives them again and compares.
CHART_SRGB = np.array([
    [116, 79, 65], [197, 144, 127], [91, 120, 155], [91, 108, 64], [131, 127, 175], [95, 189, 172],
    [224, 124, 48], [69, 90, 167], [197, 80, 95], [93, 58, 104], [156, 187, 58], [227, 161, 39],
    [40, 62, 145], [61, 147, 70], [178, 54, 57], [236, 200, 15], [191, 79, 146], [0, 133, 165],
    [241, 242, 235], [201, 202, 201], [161, 163, 163], [121, 121, 121], [83, 84, 85], [50, 50, 50],
], dtype=np.uint8)
CHART_SRGB.setflags(write=False)


def chart_srgb() -> np.ndarray:
    """The ColorChecker's 24 patches as sRGB uint8 (read-only)."""
    return CHART_SRGB


def chart_lab(lut: Lut3D | None) -> np.ndarray:
    """The chart through ``lut`` (None: untouched), in CIELAB."""
    chart = chart_srgb()
    return srgb_to_lab(chart if lut is None else lut.apply(chart))


def chart_delta_e(a: Lut3D, b: Lut3D | None = None) -> float:
    """Mean CIEDE2000 between two LUTs' outputs on the chart (b=None: the identity)."""
    return float(delta_e_rows(chart_lab(a), chart_lab(b)).mean())


def same_table(a: Lut3D, b: Lut3D, atol: float = 1e-4) -> bool:
    """The same LUT up to the precision a .cube file keeps."""
    if a.size != b.size or (a.shaper is None) != (b.shaper is None):
        return False
    if not (np.allclose(a.domain_min, b.domain_min) and np.allclose(a.domain_max, b.domain_max)):
        return False
    if a.shaper is not None and (a.shaper.shape != b.shaper.shape
                                 or not np.allclose(a.shaper, b.shaper, atol=atol)):
        return False
    return bool(np.allclose(a.table, b.table, atol=atol))


def looks_technical(name: str, lut: Lut3D) -> bool:
    """A log-to-video style conversion: says so in its name, or behaves like a log
    decode: neutral shadows crushed, a steep mid-tone climb, near-white by 85% input,
    and muted colours made far more saturated (log footage is flat and grey)."""
    if TECHNICAL_NAME.search(name):
        return True
    grey = np.repeat(np.array([26, 77, 153, 217], np.uint8)[:, None], 3, axis=1)
    out = lut.apply(grey).mean(axis=1) / 255.0
    muted = np.array([[150, 128, 106], [106, 128, 150], [128, 150, 106]], np.uint8)
    gain = np.mean(_chroma(lut.apply(muted)) / _chroma(muted))
    return bool(out[0] < 0.06 and (out[2] - out[1]) / 0.3 > 1.75 and out[3] > 0.95 and gain > 1.8)


# A look is non-photographic when it leaves the chart under this share of its colour
# spread (sqrt(var a* + var b*)): monochrome and zero-saturation looks. The tinted mono
# looks at 0.95 keep 7-19%, those at 0.6 41-49%, saturation 0.3 keeps 33%, the flat
# log-like combination 34%: at 0.25 the 0.6 toned looks stayed in, and on a reviewer's
# sheets they repainted objects (a red saucer slate, coffee grey) rather than relit them.
# At 0.5 they are out; the first look kept is combo_night (51%).
MIN_SPREAD_KEPT = 0.5
# ... or turns the chart's chromatic patches' hues by more than this on average
# (chroma-weighted): a channel swap turns them 64°, the warmest white balance 37°.
MAX_HUE_TURN = 45.0


def non_photographic(lut: Lut3D) -> str | None:
    """Why a look is not something a camera or a light would do to a photo (so it stays
    out of composites by default), or None. Measured on the ColorChecker chart."""
    before, after = chart_lab(None), chart_lab(lut)
    spread = _spread(after) / _spread(before)
    if spread < MIN_SPREAD_KEPT:
        return f"monochrome: keeps {spread:.0%} of the chart's colour spread (< {MIN_SPREAD_KEPT:.0%})"
    c0, c1 = _chroma_lab(before), _chroma_lab(after)
    chromatic = c0 > 15
    hue_before = np.degrees(atan2_array(before[:, 2], before[:, 1]))
    hue_after = np.degrees(atan2_array(after[:, 2], after[:, 1]))
    turn = np.abs((hue_after - hue_before + 180) % 360 - 180)
    weight = np.minimum(c0, c1)[chromatic]
    mean_turn = float(np.sum(turn[chromatic] * weight) / max(np.sum(weight), 1e-9))
    if mean_turn > MAX_HUE_TURN:
        return f"hue remap: turns the chart's hues {mean_turn:.0f}° on average (> {MAX_HUE_TURN:.0f}°)"
    return None


def _spread(lab: np.ndarray) -> float:
    """sqrt(var a* + var b*) over the rows of a CIELAB array."""
    sa, sb = float(lab[:, 1].std()), float(lab[:, 2].std())
    return math.sqrt(sa * sa + sb * sb)


def _chroma_lab(lab: np.ndarray) -> np.ndarray:
    return np.sqrt(lab[:, 1] * lab[:, 1] + lab[:, 2] * lab[:, 2])   # (not hypot: libm's)


def _chroma(px: np.ndarray) -> np.ndarray:
    return _chroma_lab(srgb_to_lab(px))


@dataclass
class UserLut:
    id: str
    path: Path
    lut: Lut3D | None
    error: str | None = None
    duplicate_of: str | None = None
    near_duplicate_of: str | None = None
    technical: bool = False


def scan_folder(folder: Path, known: dict[str, Lut3D] | None = None,
                near_delta_e: float = 1.0) -> list[UserLut]:
    """Read every .cube under ``folder``; classify each (error, duplicate, near-duplicate
    of an earlier or known LUT, technical). Sorted by path: stable ids and choices."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of .cube files")
    accepted: dict[str, Lut3D] = dict(known or {})
    labs = {k: chart_lab(v) for k, v in accepted.items()}
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".cube"):
        uid = f"user:{folder.name}/{path.relative_to(folder).with_suffix('').as_posix()}"
        try:
            lut = read_cube(path)
        except CubeError as exc:
            out.append(UserLut(uid, path, None, error=str(exc)))
            continue
        entry = UserLut(uid, path, lut, technical=looks_technical(path.stem + " " + lut.title, lut))
        entry.duplicate_of = next((k for k, v in accepted.items() if same_table(lut, v)), None)
        if entry.duplicate_of is None:
            lab = chart_lab(lut)
            entry.near_duplicate_of = next(
                (k for k, other in labs.items() if delta_e_rows(lab, other).mean() < near_delta_e), None)
            accepted[uid], labs[uid] = lut, lab
        out.append(entry)
    return out


def build_library(size: int = 33, user_dirs: tuple[str, ...] = (), exclude_technical: bool = True,
                  near_delta_e: float = 1.0, min_delta_e: float = 0.0,
                  photographic_only: bool = False) -> dict[str, Lut3D]:
    """id -> LUT: the built-in looks, then each user folder's usable, non-duplicate LUTs
    (near-duplicates are kept, only flagged by ``luts check``); looks whose mean ΔE2000
    against identity on the chart is under ``min_delta_e`` are left out, and with
    ``photographic_only`` so are the ``non_photographic`` ones."""
    return dict(_library(size, tuple(str(d) for d in user_dirs), exclude_technical, near_delta_e,
                         min_delta_e, photographic_only))


@lru_cache(maxsize=4)
def _library(size, user_dirs, exclude_technical, near_delta_e,
             min_delta_e, photographic_only=False) -> tuple[tuple[str, Lut3D], ...]:
    luts = dict(builtin_luts(size))
    for folder in user_dirs:
        # Near-duplicates stay in (only `luts check` flags them): no chart comparisons here.
        for entry in scan_folder(Path(folder), luts, near_delta_e=0.0):
            if entry.lut is None or entry.duplicate_of or (exclude_technical and entry.technical):
                continue
            luts[entry.id] = entry.lut
    if min_delta_e > 0:
        luts = {k: v for k, v in luts.items() if chart_delta_e(v) >= min_delta_e}
    if photographic_only:
        luts = {k: v for k, v in luts.items() if non_photographic(v) is None}
    return tuple(luts.items())


def pool_for(luts) -> dict[str, Lut3D]:
    """The looks a build with ``luts`` (a LutsConfig) composites with."""
    return build_library(luts.size, tuple(str(d) for d in luts.user_dirs), luts.exclude_technical,
                         luts.near_duplicate_delta_e, luts.composite_min_delta_e,
                         luts.composite_photographic_only)


def version_for(luts) -> str:
    """The library's one version under ``luts``: a digest of every usable look (built-in
    and user) before the composite ΔE floor (which the config hash covers). `luts build`
    prints the same for the built-ins."""
    return library_version(build_library(luts.size, tuple(str(d) for d in luts.user_dirs),
                                         luts.exclude_technical, luts.near_duplicate_delta_e))


def left_out_for(luts) -> list[str]:
    """User LUT files that did not join the library under ``luts``, each "file[:line]: why"."""
    return list(left_out(tuple(str(d) for d in luts.user_dirs), luts.exclude_technical))


@lru_cache(maxsize=4)
def left_out(user_dirs: tuple[str, ...], exclude_technical: bool = True) -> tuple[str, ...]:
    """Every user .cube that did not join the library, as "file[:line]: reason"
    (sorted): unreadable files, exact duplicates, technical conversions."""
    problems = []
    known = dict(builtin_luts(33))
    for folder in user_dirs:
        for entry in scan_folder(Path(folder), known, near_delta_e=0.0):
            if entry.error:
                problems.append(entry.error)
            elif entry.duplicate_of:
                problems.append(f"{entry.path}: the same table as {entry.duplicate_of}")
            elif exclude_technical and entry.technical:
                problems.append(f"{entry.path}: a technical conversion (log to video), not a look "
                                "(luts.exclude_technical)")
            if entry.lut is not None and not entry.duplicate_of:
                known[entry.id] = entry.lut
    return tuple(sorted(problems))


def library_version(luts: dict[str, Lut3D] | None = None) -> str:
    """Digest of every LUT's id and content: changes whenever the library does."""
    luts = luts if luts is not None else builtin_luts(33)
    h = hashlib.sha256()
    for key in sorted(luts):
        h.update(key.encode())
        h.update(luts[key].content_digest.encode())
    return h.hexdigest()[:12]


# --- the committed manifest and the generated .cube files --------------------------------

def manifest_entries(size: int = 33) -> list[dict]:
    from tasks.synthesize.luts import cube_bytes

    luts = builtin_luts(size)
    out = []
    for lk in LOOKS:
        why_not = non_photographic(luts[lk.id])
        out.append({"id": lk.id, "family": lk.family, "steps": lk.params_json(),
                    "sha256": hashlib.sha256(cube_bytes(luts[lk.id])).hexdigest(),
                    "delta_e_vs_identity": round(chart_delta_e(luts[lk.id]), 2),
                    # Whether the look may enter composites by default
                    # (luts.composite_photographic_only).
                    "composite": why_not is None, "not_in_composites_because": why_not})
    return out


def write_manifest(size: int = 33, path: Path = MANIFEST) -> dict:
    from tasks.core.files import write_json_atomic

    data = {"size": size, "count": len(LOOKS), "version": library_version(builtin_luts(size)),
            "chart": "ColorChecker24 - After November 2014, sRGB D65",
            "looks": manifest_entries(size)}
    write_json_atomic(path, data)
    return data


def write_cubes(out_dir: Path = GENERATED, size: int = 33) -> list[Path]:
    """Every built-in look as ``<id>.cube`` (deterministic bytes, TITLE = id)."""
    from tasks.synthesize.luts import write_cube

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, lut in builtin_luts(size).items():
        write_cube(lut, out_dir / f"{key}.cube")
        paths.append(out_dir / f"{key}.cube")
    return paths
