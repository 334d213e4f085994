"""The judge's colour rules on a subsample of the region, before a draw is rendered.

Half of the LUT recipes' draws are turned down, and each used to be rendered in full
(every pixel through two looks) and measured before it was. The visibility, greyed,
colourised, hue and clipping rules need only colour statistics of the region, so a
draw is first judged on the region pixels the mean ΔE is taken on (every k-th pixel in
raster order, at most 1,024): there ΔE is exact (the same pixels and sum as
``tasks.synthesize.metrics.difficulty``), and the means, ratios and shares are estimates. A draw is
turned down early only when an exact value fails, or an estimate fails by a margin
(``PREJUDGE_MARGIN``); everything else is rendered and judged in full, so a kept row is
always one the full judge kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from schemas.config import SynthesisConfig
from tasks.core import fixedmath
from tasks.synthesize.colorimetry import delta_e_stride, mean_delta_e
from tasks.synthesize.lut_kernels import apply_u8
from tasks.synthesize.realism import (
    CLIP_BLACK,
    CLIP_WHITE,
    MIN_INTERIOR,
    NEUTRAL_CHROMA,
    NEUTRAL_MIN_L,
    NEUTRAL_MIN_SHARE,
    chroma,
    extremes,
    lab,
)

# An estimate must miss its threshold by this share (or, for the hue, this many
# degrees) before a draw is turned down on it: at 1,024 pixels the estimates of the
# region's means are within ~3% of the full values. At 5% / 5 degrees the full judge
# agrees with every one of the 114 labelled rows decided early (tested; at 0 it
# disagrees on one) and 799 of 800 bench samples come out as at 15% / 10 degrees, the
# first, wider choice, which rendered ~30% more draws in full (docs/benchmarks.md).
PREJUDGE_MARGIN = 0.05
HUE_MARGIN_DEG = 5.0


@dataclass(frozen=True)
class Probe:
    """A region's pixels at the ΔE stride, and its share of the frame."""

    px: np.ndarray          # (n, 3) uint8, raster order
    fg_ratio: float


def probe(img: np.ndarray, mask: np.ndarray) -> Probe:
    region = img[mask]
    return Probe(np.ascontiguousarray(region[::delta_e_stride(len(region))]), float(mask.mean()))


def looks_on(p: Probe, lut_a, lut_b, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """(target, composite) at the probe's pixels: bit for bit what the fused kernel
    renders there (the same per-pixel lookup and blend)."""
    comp = apply_u8(p.px, lut_a, strength=strength)
    target = apply_u8(p.px, lut_b, strength=strength) if lut_b is not None else p.px
    return target, comp


@njit(cache=True, nogil=True)
def _fmse(target: np.ndarray, composite: np.ndarray) -> float:
    """Mean squared difference over the probe's pixels and channels. The sum is of
    integers, exact in any order: bit for bit numpy's mean of the float64 squares."""
    sse = 0
    for i in range(target.shape[0]):
        for c in range(3):
            e = np.int64(composite[i, c]) - np.int64(target[i, c])
            sse += e * e
    return sse / (3 * target.shape[0]) if target.shape[0] else math.nan


@njit(cache=True, nogil=True)
def _mean_shift(t_lab: np.ndarray, c_lab: np.ndarray) -> np.ndarray:
    """Per channel, the mean of ``c_lab`` less the mean of ``t_lab`` ((n, 3) float32): each
    mean a float64 sum down the rows in order, over n, as numpy's ``mean(axis=0)`` adds
    (one pass instead of four copies and reductions)."""
    st, sc = np.zeros(3), np.zeros(3)
    for i in range(t_lab.shape[0]):
        for k in range(3):
            st[k] += np.float64(t_lab[i, k])
            sc[k] += np.float64(c_lab[i, k])
    return sc / t_lab.shape[0] - st / t_lab.shape[0]


def _chroma_hue(lab_px: np.ndarray) -> tuple[float, float, float]:
    """(mean chroma, mean a*, mean b*) of (n, 3) CIELAB pixels."""
    a, b = lab_px[:, 1].astype(np.float64), lab_px[:, 2].astype(np.float64)
    return float(np.sqrt(a * a + b * b).mean()), float(a.mean()), float(b.mean())


def prejudge(target: np.ndarray, composite: np.ndarray, fg_ratio: float,
             cfg: SynthesisConfig) -> tuple[list[str], float | None]:
    """The reasons a draw is turned down already on its probe pixels ((n, 3) uint8 of
    the target and the composite), [] = render it and ask the full judge; and the
    region's exact mean ΔE when it was measured (the full judge's difficulty reuses it).
    The estimates come before the exact ΔE, which costs most here (CIEDE2000 with
    CPU-independent maths): most draws are turned down on them already (invisible on the
    fMSE or the mean colour's shift, or on a colour rule). A draw is turned down iff any
    reason holds, whatever their order; the reasons given are those found before the
    first check that fails."""
    r = cfg.realism
    lo, hi = 1.0 - PREJUDGE_MARGIN, 1.0 + PREJUDGE_MARGIN
    if _fmse(target, composite) < r.min_fmse * lo:
        return ["invisible_change"], None
    # (as one row of pixels: OpenCV converts a row at a time, so a column of 1-pixel rows
    # costs ~5x more; each pixel's value is the same either way)
    t_lab, c_lab = lab(target[None])[0], lab(composite[None])[0]
    shift = _mean_shift(t_lab, c_lab)
    # (sqrt, not numpy's power or hypot: a decision must not depend on the CPU)
    floor = r.min_visibility_small if fg_ratio < r.small_region else r.min_visibility
    if float(np.sqrt((shift * shift).sum())) * math.sqrt(math.sqrt(fg_ratio)) < floor * lo:
        return ["invisible_change"], None
    out = []
    (chroma_t, at, bt), (chroma_c, ac, bc) = _chroma_hue(t_lab), _chroma_hue(c_lab)
    ratio = chroma_c / max(chroma_t, 2.0)
    if ((chroma_t >= r.chromatic * hi and ratio < r.min_chroma_ratio * lo)
            or (chroma_t >= r.saturated_chroma * hi and ratio < r.min_saturated_chroma_ratio * lo)):
        out.append("fg_greyed")
    if chroma_t < r.chromatic * lo and chroma_c > r.colourised_chroma * hi:
        out.append("fg_colourised")
    if ((chroma_t >= r.boosted_chroma * hi and ratio > r.max_chroma_boost * hi)
            or (chroma_t >= r.chromatic * hi
                and ratio > max(r.max_chroma_boost, r.max_pale_chroma_boost) * hi)):
        out.append("fg_oversaturated")
    neutral = _neutral_chroma(t_lab, c_lab)
    if neutral is not None and neutral > r.max_neutral_chroma * hi:
        out.append("neutral_painted")
    if min(math.sqrt(at * at + bt * bt), math.sqrt(ac * ac + bc * bc)) >= 8.0 * hi:
        turn = math.degrees(fixedmath.atan2(abs(at * bc - bt * ac), at * ac + bt * bc))
        if turn > r.max_hue_shift + HUE_MARGIN_DEG:
            out.append("hue_rotated")
    clip_t, clip_c = _clipped(target), _clipped(composite)
    if float((clip_c & ~clip_t).mean()) > r.max_new_clip * hi:
        out.append("new_clipping")
    if out:   # (no exact ΔE: about a quarter of the draws that get this far)
        return out, None
    de = mean_delta_e(composite, target)
    if de > cfg.max_delta_e:
        return ["fg_change_above_max"], de
    if de < r.min_delta_e:
        return ["invisible_change"], de
    return [], de


def _neutral_chroma(t_lab: np.ndarray, c_lab: np.ndarray) -> float | None:
    """The judge's ``neutral_chroma`` on the probe pixels; None where too few of them are
    near-neutral for an estimate."""
    t, c = t_lab.astype(np.float64), c_lab.astype(np.float64)
    neutral = (chroma(t[:, 1], t[:, 2]) < NEUTRAL_CHROMA) & (t[:, 0] > NEUTRAL_MIN_L)
    if neutral.sum() < max(MIN_INTERIOR, NEUTRAL_MIN_SHARE * len(t)):
        return None
    return float(chroma(c[neutral, 1], c[neutral, 2]).mean())


def _clipped(px: np.ndarray) -> np.ndarray:
    """Every channel near white or near black (the judge's ``_clipped_at``, per array)."""
    lo, hi = extremes(px)
    return (lo >= CLIP_WHITE) | (hi <= CLIP_BLACK)
