"""The realism judge: is a composite a plausible harmonization example?

DoveNet's authors reviewed their synthesized composites by hand and dropped the ones a
person would not mistake for a real colour mismatch. ``assess`` does that review from
pixel evidence only (target, composite, mask), so it runs on any triple, ours or another
dataset's. Each reason is one measured feature against one threshold
(``schemas.config.RealismConfig``, where each threshold's reason is given):

- ``invisible_change``: the foreground barely changed (mean ΔE2000, fMSE);
- ``fg_greyed``: a colourful foreground lost most of its chroma (a strongly coloured
  one, more than half of it);
- ``fg_colourised``: a near-neutral foreground became strongly coloured;
- ``fg_oversaturated``: a coloured foreground's chroma was multiplied (skin seen through
  glasses turned orange, a white rocket gold: painted, not re-lit);
- ``neutral_painted``: the foreground's white, grey or metal parts took a strong colour
  (a white cup or cap crown turned orange, a silver spoon gold), even where the rest of
  the region is coloured;
- ``mono_scene``: a colourful foreground in a monochrome (or one-tint) scene;
- ``hue_rotated``: a chromatic foreground's mean hue turned far (another object colour,
  not another light);
- ``chroma_speckle``: a*b* high-frequency energy far above the target's;
- ``boundary_halo``: the mask's edge band changed unlike its interior (a loose polygon's
  background taken into the transfer: dark fringes, pale halos);
- ``texture_changed``: luma gradient energy destroyed or amplified;
- ``new_clipping``: a large share of the foreground newly blown to white or crushed to black;
- ``no_outline``: the target shows no edge where the mask's outline runs (a region cut
  out of a continuous surface: a rectangle of sky, a strip along the image border, a
  lattice's polygon filled with the sky behind it); recolouring it paints a shape, not
  an object in another light;
- ``seam``: along a share of the outline the photo shows no edge and the composite
  shows one (a loose polygon's panel cut through the background), even where the rest
  of the outline is a real edge;
- ``mask_too_thin``: the mask has no interior to measure once its edge band is taken off.

Every feature is returned by ``features`` (stored per row, so users can re-filter with
other thresholds); ``reasons`` applies the thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from schemas.config import RealismConfig
from schemas.shard import REALISM_FIELDS
from tasks.core import fixedmath
from tasks.core.linalg3 import norm
from tasks.synthesize.metrics import difficulty

# The mask's edge band: this many pixels inside the boundary (at 256², VGPhraseCut
# polygons stray ~1-3 px from the object's true edge).
BAND_PX = 2
# The background's colour statistics and the outline's contrast are taken on the image
# shrunk by this factor: a scene's colour spread and a colour step across an outline
# need no detail, and it keeps the judge's cost small (it runs on every draw).
SHRINK = 4
# Under this many interior pixels no feature is a stable measurement.
MIN_INTERIOR = 16
# A region pixel is near-neutral (white, grey, metal) under this CIELAB chroma, and lit
# enough that its hue means something (L* over NEUTRAL_MIN_L: near-black pixels carry
# JPEG chroma noise). ``neutral_chroma`` is measured when at least NEUTRAL_MIN_SHARE of
# the region (and MIN_INTERIOR pixels) are such.
NEUTRAL_CHROMA, NEUTRAL_MIN_L, NEUTRAL_MIN_SHARE = 8.0, 15.0, 0.01
# The foreground crop's margin: room for the filters' 3×3 kernels.
MARGIN = 2
# Each side of the mask's outline is averaged over this window around an outline pixel
# of the shrunk image (12 px at 256²: wide enough to step over JPEG noise and a
# polygon's 1-3 px stray).
OUTLINE_WINDOW = 3
# An outline pixel needs this many pixels of each side in its window.
OUTLINE_MIN_SIDE = 2
# A seam: where the photo's step across the outline is under SEAM_PHOTO_FLAT (ΔE76: no
# edge there; the outline contrast's own floor is 7) and the composite's is at least
# SEAM_STEP more (a step a reviewer sees at 1x).
SEAM_PHOTO_FLAT, SEAM_STEP = 6.0, 8.0
FEATURES = tuple(name for name, _doc in REALISM_FIELDS)   # the shards' ``realism`` struct
REASONS = ("invisible_change", "fg_greyed", "fg_colourised", "fg_oversaturated", "neutral_painted",
           "mono_scene", "hue_rotated", "chroma_speckle", "boundary_halo", "texture_changed",
           "new_clipping", "no_outline", "seam", "mask_too_thin", "mask_empty")
_KERNEL = np.ones((3, 3), np.uint8)
# A pixel is blown when every channel is at least CLIP_WHITE, crushed when at most CLIP_BLACK.
CLIP_WHITE, CLIP_BLACK = 245, 6


def lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (any leading shape) -> float32 CIELAB (L 0-100, a/b signed)."""
    return cv2.cvtColor(rgb.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)


def extremes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the lowest and the highest channel: every channel near white (blown)
    when the lowest is high, near black (crushed) when the highest is low."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.minimum(np.minimum(r, g), b), np.maximum(np.maximum(r, g), b)


def chroma(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sqrt(a*^2 + b*^2) per pixel. Not cv2.magnitude: its SIMD and scalar paths round
    differently and which pixels take which depends on the buffer's address, so the
    same image gave other features (and other stored bytes) from one run to the next."""
    return np.sqrt(a * a + b * b)


def _stats(lab_img: np.ndarray, mask8: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean L*a*b* over a mask, and sqrt(var a* + var b*): how varied the region's
    colours are (a one-tint scene is ~0)."""
    mean, std = cv2.meanStdDev(lab_img, mask=mask8)
    return mean[:, 0], norm(std[1:, 0])


def _mean(img: np.ndarray, mask8: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.mean(img, mask=mask8)[:img.shape[2] if img.ndim == 3 else 1])


def _edges(channels: tuple[np.ndarray, ...], interior8: np.ndarray) -> tuple[float, float]:
    """Mean |Laplacian| of a* + b* (chroma high frequencies) and mean luma gradient
    (|d/dx| + |d/dy|, Sobel) over the interior; ``channels``: L*, a*, b* planes. Sums of
    absolute values are cv2.norm's L1 under the mask (no temporaries)."""
    n = max(1, cv2.countNonZero(interior8))

    def l1(x):
        return cv2.norm(x, cv2.NORM_L1, mask=interior8)

    L, a, b = channels
    hf = l1(cv2.Laplacian(a, cv2.CV_32F, ksize=1)) + l1(cv2.Laplacian(b, cv2.CV_32F, ksize=1))
    grad = l1(cv2.Sobel(L, cv2.CV_32F, 1, 0, ksize=3)) + l1(cv2.Sobel(L, cv2.CV_32F, 0, 1, ksize=3))
    return hf / n, grad / n


@njit(inline="always", cache=True, nogil=True)
def _clipped_at(rgb, y, x):
    """Every channel near white (blown) or near black (crushed)."""
    r, g, b = rgb[y, x, 0], rgb[y, x, 1], rgb[y, x, 2]
    return ((r >= CLIP_WHITE and g >= CLIP_WHITE and b >= CLIP_WHITE)
            or (r <= CLIP_BLACK and g <= CLIP_BLACK and b <= CLIP_BLACK))


@njit(cache=True, nogil=True)
def _newly_clipped(target: np.ndarray, composite: np.ndarray, fg8: np.ndarray) -> int:
    """Foreground pixels clipped in the composite and not in the target (one pass, no
    images of flags)."""
    n = 0
    for y in range(fg8.shape[0]):
        for x in range(fg8.shape[1]):
            if fg8[y, x] and _clipped_at(composite, y, x) and not _clipped_at(target, y, x):
                n += 1
    return n


def _window_sums(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sums over the window around each (ys, xs) (outside the image counts as neither side)."""
    return cv2.boxFilter(img, cv2.CV_32F, (OUTLINE_WINDOW, OUTLINE_WINDOW), normalize=False,
                         borderType=cv2.BORDER_CONSTANT)[ys, xs].reshape(len(ys), -1)


@dataclass(frozen=True, eq=False)
class OutlineWindows:
    """The outline pixels of a mask whose windows hold enough of each side, in a fixed
    order, and how many pixels of each side their windows hold: they depend on the mask
    only, so the photo and every draw of a task share them."""

    ys: np.ndarray
    xs: np.ndarray
    n_in: np.ndarray      # (k, 1) float32
    n_out: np.ndarray


def outline_windows(mask8: np.ndarray) -> OutlineWindows | None:
    """``OutlineWindows`` of a 0/1 mask; None where the outline never runs inside the image."""
    ys, xs = np.nonzero(mask8 - cv2.erode(mask8, _KERNEL))   # (the image border is no edge)
    if not len(ys):
        return None
    n_in = _window_sums(mask8, ys, xs)
    n_out = _window_sums(np.ones_like(mask8), ys, xs) - n_in
    ok = ((n_in >= OUTLINE_MIN_SIDE) & (n_out >= OUTLINE_MIN_SIDE))[:, 0]
    if not ok.any():
        return None
    return OutlineWindows(ys[ok], xs[ok], n_in[ok], n_out[ok])


def _steps(lab_img: np.ndarray, mask8: np.ndarray, windows: OutlineWindows | None) -> np.ndarray | None:
    if windows is None:
        return None
    w = windows
    s_in, s_all = _window_sums(cv2.copyTo(lab_img, mask8), w.ys, w.xs), _window_sums(lab_img, w.ys, w.xs)
    step = s_in / w.n_in - (s_all - s_in) / w.n_out
    return np.linalg.norm(step, axis=1)


def outline_steps(lab_img: np.ndarray, mask8: np.ndarray) -> np.ndarray | None:
    """Per outline pixel of the mask, ΔE76 between the mean colour of the mask's pixels
    and of the other pixels in the window around it; None where the outline never runs
    inside the image. ``lab_img`` and the 0/1 ``mask8`` at the size to measure at (see
    ``_shrunk``); the outline pixels come in a fixed order, so two images' steps pair up."""
    return _steps(lab_img, mask8, outline_windows(mask8))


def outline_contrast(lab_img: np.ndarray, mask8: np.ndarray) -> float:
    """How much the image changes across the mask's outline: the upper quartile of
    ``outline_steps``. An object's outline runs on an edge of the photo for a good part
    of its length (not all: a tabby cat on a like-coloured rug); a region cut out of a
    continuous surface has none anywhere. -1 where the outline never runs inside the
    image."""
    return _outline(lab_img, mask8, outline_windows(mask8)).contrast


def seam_share(target_steps: np.ndarray | None, composite_steps: np.ndarray | None) -> float:
    """The share of the outline along which the photo shows no edge and the composite
    shows one: a seam the change made (a loose polygon's panel cut through the
    background). 0 where there is no outline."""
    if target_steps is None or composite_steps is None or not len(target_steps):
        return 0.0
    seam = (target_steps < SEAM_PHOTO_FLAT) & (composite_steps >= target_steps + SEAM_STEP)
    return float(seam.mean())


def _crop(mask8: np.ndarray) -> tuple[int, int, int, int] | None:
    """The mask's box plus a margin for the filters (y0, y1, x0, x1); None if empty:
    every feature is measured there, not on the whole image."""
    x, y, bw, bh = cv2.boundingRect(mask8)
    if bw == 0:
        return None
    h, w = mask8.shape
    return (max(0, y - MARGIN), min(h, y + bh + MARGIN), max(0, x - MARGIN), min(w, x + bw + MARGIN))


def _shrunk(img: np.ndarray) -> np.ndarray:
    """The whole image SHRINK times smaller, by area (a 0/1 mask stays 0/1: majority)."""
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, w // SHRINK), max(1, h // SHRINK)), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True, eq=False)
class MaskShape:
    """The pieces of a mask every draw's features are measured on (``mask_shape``):
    they depend on the mask only, so the build makes them once per task."""

    fg_ratio: float
    crop: tuple[int, int, int, int]     # ``_crop``: the box the features are measured in
    fg8: np.ndarray                     # 0/1, in the crop
    interior8: np.ndarray               # BAND_PX inside the outline
    band8: np.ndarray                   # the edge band: fg8 less interior8
    n_fg: int
    n_interior: int
    small_m8: np.ndarray                # the whole mask at 1/4 size
    small_bg: np.ndarray
    windows: OutlineWindows | None      # the outline's windows at 1/4 size


def mask_shape(mask: np.ndarray) -> MaskShape | None:
    """``MaskShape`` of a bool mask; None for an empty one."""
    m8 = mask.astype(np.uint8)
    crop = _crop(m8)
    if crop is None:
        return None
    y0, y1, x0, x1 = crop
    fg8 = m8[y0:y1, x0:x1]
    interior8 = cv2.erode(fg8, _KERNEL, iterations=BAND_PX)   # (the image border is no edge)
    small_m8 = _shrunk(m8)
    return MaskShape(float(m8.mean()), crop, fg8, interior8, fg8 - interior8, cv2.countNonZero(fg8),
                     cv2.countNonZero(interior8), small_m8, (small_m8 == 0).view(np.uint8),
                     outline_windows(small_m8))


@dataclass(frozen=True)
class Outline:
    """What the photo shows along a mask's outline, measured once per task."""

    contrast: float                 # ``outline_contrast`` (-1: no outline inside the image)
    steps: np.ndarray | None        # ``outline_steps``, for the seam feature
    fine_flat: float = 0.0          # the flat share of the outline at the stored size
    shape: MaskShape | None = None  # the mask's, for the features of each draw

    @property
    def loose(self) -> float:
        """The share of the outline along which the photo shows no edge (a step under
        SEAM_PHOTO_FLAT): a polygon that cuts through background or a surface there
        (0 where there is no outline). The larger of two scales: at 1/4 size a strip of
        sky around a lattice tower has no edge, while a strip of a surface the polygon
        crosses (a flag's polygon over a suit's shoulder, glasses' over the cheeks) blurs
        into its neighbours' edges and shows only at the stored size."""
        return max(_flat_share(self.steps), self.fine_flat)


def _flat_share(steps: np.ndarray | None) -> float:
    """The share of outline steps under SEAM_PHOTO_FLAT (0 where there is no outline)."""
    return 0.0 if steps is None else float((steps < SEAM_PHOTO_FLAT).mean())


def _outline(lab_small: np.ndarray, mask8_small: np.ndarray, windows: OutlineWindows | None,
             fine_flat: float = 0.0, shape: MaskShape | None = None) -> Outline:
    steps = _steps(lab_small, mask8_small, windows)
    return Outline(-1.0 if steps is None else float(np.percentile(steps, 75)), steps, fine_flat, shape)


def mask_outline(rgb: np.ndarray, mask: np.ndarray, fine: bool = False) -> Outline:
    """The photo's outline contrast and steps around a bool mask: the build checks each
    task's mask once, before drawing composites for it. ``fine``: measure the flat share
    at the stored size too, for a mask fitted to the photo's edges; a hand-drawn polygon
    strays 1-3 px from them, so at that size its outline runs beside the edge, flat by
    construction (on the labelled set's polygons 87% of the plausible rows would go, not 42%)."""
    shape = mask_shape(mask)
    if shape is None:   # (an empty mask: no outline)
        return Outline(-1.0, None)
    fine_flat = 0.0
    if fine:   # (the mask's box and a margin: the windows see what they would)
        y0, y1, x0, x1 = shape.crop
        fine_flat = _flat_share(outline_steps(lab(rgb[y0:y1, x0:x1]), shape.fg8))
    return _outline(lab(_shrunk(rgb)), shape.small_m8, shape.windows, fine_flat, shape)


def mask_outline_contrast(rgb: np.ndarray, mask: np.ndarray) -> float:
    """``outline_contrast`` of a uint8 RGB image around a bool mask (-1 for an empty mask)."""
    return mask_outline(rgb, mask).contrast


def _hue_angle(u: np.ndarray, v: np.ndarray) -> float:
    """Degrees between two a*b* vectors, as atan2(|u x v|, u . v) (``fixedmath``: the
    stored angle must not depend on the CPU's libm)."""
    (u0, u1), (v0, v1) = (float(x) for x in u), (float(x) for x in v)
    return math.degrees(fixedmath.atan2(abs(u0 * v1 - u1 * v0), u0 * v0 + u1 * v1))


def features(target: np.ndarray, composite: np.ndarray, mask: np.ndarray,
             metrics: dict[str, float] | None = None,
             outline: Outline | None = None) -> dict[str, float] | str:
    """Every feature of the triple (finite floats), or the reason none can be measured.

    ``metrics``: ``tasks.synthesize.metrics.difficulty`` of the same triple when the caller has it.
    ``outline``: ``mask_outline`` of the photo when the caller has it: it depends on the
    photo and the mask only, so the build measures it once per task (for ``lut_pair``,
    on the photo before look B), not on every draw. It must be of this ``mask``: its
    ``shape`` (the crop, bands and windows) is what the features are measured on.
    Masked statistics are OpenCV's (one pass each, no boolean indexing): the judge runs
    on every draw of the build."""
    if target.shape != composite.shape or target.shape[:2] != mask.shape or target.ndim != 3:
        raise ValueError(f"shapes differ: target {target.shape}, composite {composite.shape}, "
                         f"mask {mask.shape}")
    shape = outline.shape if outline is not None and outline.shape is not None else mask_shape(mask)
    if shape is None:
        return "mask_empty"
    if shape.n_interior < MIN_INTERIOR:
        return "mask_too_thin"
    y0, y1, x0, x1 = shape.crop
    fg8, interior8, band8 = shape.fg8, shape.interior8, shape.band8
    metrics = metrics or difficulty(composite, target, mask)
    t_rgb, c_rgb = target[y0:y1, x0:x1], composite[y0:y1, x0:x1]
    t_lab, c_lab = lab(t_rgb), lab(c_rgb)
    t_ch, c_ch = cv2.split(t_lab), cv2.split(c_lab)
    ch_t, ch_c = chroma(t_ch[1], t_ch[2]), chroma(c_ch[1], c_ch[2])
    chroma_t, chroma_c = float(_mean(ch_t, fg8)[0]), float(_mean(ch_c, fg8)[0])
    neutral8 = ((ch_t < NEUTRAL_CHROMA) & (t_ch[0] > NEUTRAL_MIN_L)).view(np.uint8) & fg8
    n_neutral = cv2.countNonZero(neutral8)
    neutral = (float(_mean(ch_c, neutral8)[0])
               if n_neutral >= max(MIN_INTERIOR, NEUTRAL_MIN_SHARE * shape.n_fg) else 0.0)
    (mean_t, spread_t), (mean_c, spread_c) = _stats(t_lab, fg8), _stats(c_lab, fg8)
    # How far the region's mean colour moved (ΔE76), weighted by its size: what the eye
    # sees of a change is a shift of the whole object, and a small object needs more.
    visibility = norm(mean_c - mean_t) * math.sqrt(math.sqrt(shape.fg_ratio))   # (area^1/4)
    # The hue turn is measured only when both means carry a hue (else it is noise).
    hue = (_hue_angle(mean_t[1:], mean_c[1:])
           if min(norm(mean_t[1:]), norm(mean_c[1:])) >= 8.0 else 0.0)
    hf_t, tex_t = _edges(t_ch, interior8)
    hf_c, tex_c = _edges(c_ch, interior8)
    # The mean change over a mask is the difference of the means (no change image).
    halo = (norm((_mean(c_lab, band8) - _mean(t_lab, band8))
                 - (_mean(c_lab, interior8) - _mean(t_lab, interior8)))
            if shape.n_interior < shape.n_fg else 0.0)
    new_clip = _newly_clipped(t_rgb, c_rgb, fg8) / max(1, shape.n_fg)
    # Scene colour spread (the composite's background) and the target's outline contrast,
    # on the images shrunk.
    small_c = lab(_shrunk(composite))
    photo = outline if outline is not None else _outline(lab(_shrunk(target)), shape.small_m8, shape.windows)
    out = {
        "delta_e": float(metrics["delta_e"]), "fmse": float(metrics["fmse"]),
        "visibility": visibility,
        "fg_ratio": shape.fg_ratio,
        "fg_chroma": chroma_t,
        # Floors on the denominators: near-grey, flat regions give ratios of noise.
        "fg_chroma_ratio": chroma_c / max(chroma_t, 2.0),
        "neutral_chroma": neutral,
        "fg_spread": spread_c,
        # A light change moves a region's colours together; a one-tint look collapses them.
        "spread_ratio": spread_c / max(spread_t, 2.0),
        "bg_spread": (_stats(small_c, shape.small_bg)[1] if cv2.countNonZero(shape.small_bg) > 1
                      else -1.0),
        "hue_shift": hue,
        "speckle_ratio": hf_c / max(hf_t, 0.5),
        "halo": halo,
        "texture_ratio": tex_c / max(tex_t, 1.0) if tex_t >= 1.0 else 1.0,
        "new_clip": new_clip,
        "outline_contrast": photo.contrast,
        "seam": seam_share(photo.steps, _steps(small_c, shape.small_m8, shape.windows)),
    }
    return {k: (v if np.isfinite(v) else 0.0) for k, v in out.items()}


def reasons(f: dict[str, float], cfg: RealismConfig = RealismConfig()) -> list[str]:
    """The thresholds applied to ``features``' values: why the composite is not kept."""
    out = []
    small = f["fg_ratio"] < cfg.small_region
    if (f["delta_e"] < cfg.min_delta_e or f["fmse"] < cfg.min_fmse
            or f["visibility"] < (cfg.min_visibility_small if small else cfg.min_visibility)):
        out.append("invisible_change")
    if (f["fg_chroma"] >= cfg.chromatic and f["fg_chroma_ratio"] < cfg.min_chroma_ratio) or (
            f["fg_chroma"] >= cfg.saturated_chroma and f["fg_chroma_ratio"] < cfg.min_saturated_chroma_ratio):
        out.append("fg_greyed")
    if f["fg_chroma"] < cfg.chromatic and f["fg_chroma"] * f["fg_chroma_ratio"] > cfg.colourised_chroma:
        out.append("fg_colourised")
    boost = cfg.max_chroma_boost if f["fg_chroma"] >= cfg.boosted_chroma else cfg.max_pale_chroma_boost
    if f["fg_chroma"] >= cfg.chromatic and f["fg_chroma_ratio"] > boost:   # (near-grey: fg_colourised)
        out.append("fg_oversaturated")
    if f["neutral_chroma"] > cfg.max_neutral_chroma:
        out.append("neutral_painted")
    if 0 <= f["bg_spread"] < cfg.mono_bg_spread and f["fg_spread"] > cfg.mono_fg_spread:
        out.append("mono_scene")
    if f["hue_shift"] > cfg.max_hue_shift:
        out.append("hue_rotated")
    if f["speckle_ratio"] > cfg.max_speckle_ratio:
        out.append("chroma_speckle")
    if f["halo"] > cfg.max_halo:
        out.append("boundary_halo")
    if not cfg.min_texture_ratio <= f["texture_ratio"] <= cfg.max_texture_ratio:
        out.append("texture_changed")
    if f["new_clip"] > cfg.max_new_clip:
        out.append("new_clipping")
    if 0 <= f["outline_contrast"] < cfg.min_outline_contrast:
        out.append("no_outline")
    if f["seam"] > cfg.max_seam:
        out.append("seam")
    return out


def check_triple(target, composite, mask) -> None:
    """Refuse what ``assess`` cannot judge, in one line: the features are defined on 8-bit
    RGB (a uint16 image's values would read as 256x the colour), on one size."""
    def given(x) -> str:
        return f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__

    for name, img in (("target", target), ("composite", composite)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"assess: {name} is a {given(img)}; want uint8 RGB (H, W, 3)")
    if target.shape != composite.shape:
        raise ValueError(f"assess: target {target.shape} and composite {composite.shape} differ in size")
    if not isinstance(mask, np.ndarray) or mask.shape != target.shape[:2] or not (
            mask.dtype == bool or (np.issubdtype(mask.dtype, np.integer) and mask.max(initial=0) <= 1
                                   and mask.min(initial=0) >= 0)):
        raise ValueError(f"assess: mask is a {given(mask)}; want bool (or 0/1) of shape {target.shape[:2]}")


def assess(target: np.ndarray, composite: np.ndarray, mask: np.ndarray,
           cfg: RealismConfig = RealismConfig()) -> list[str]:
    """Why (target, composite, mask) is not a plausible harmonization example; [] = keep.

    uint8 RGB H×W×3 arrays and a bool (or 0/1 integer) H×W mask; anything else is a
    ``ValueError`` saying what was given."""
    check_triple(target, composite, mask)
    f = features(target, composite, mask.astype(bool))
    return [f] if isinstance(f, str) else reasons(f, cfg)
