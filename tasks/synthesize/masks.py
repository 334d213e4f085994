"""Stage: polygon masks, rasterized by VGPhraseCut's official rule (or, as an option,
pycocotools' unbiased one), then resized to the output size.

The official rule (PhraseCutDataset ``utils/data_transfer.py::polygons_to_mask``):
concatenate the instances' polygons, skip polygons with fewer than 2 points, truncate
each point with ``int()``, and draw it with PIL ``ImageDraw.polygon(..., outline=1,
fill=1)`` on an ``L`` image of size (w, h); the mask is the union. We draw every
polygon on one canvas, which is the same union.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit
from PIL import Image, ImageDraw

# A point this far outside the image (as a fraction of its side) is not a slightly
# sloppy click but a wrong coordinate system or corrupt record.
FAR_OUTSIDE = 0.25


def polygons_to_mask(task_polygons: list, width: int, height: int,
                     rule: str = "official") -> np.ndarray:
    """A task's ``Polygons`` field, as is, -> bool (height, width) mask.

    ``rule="official"``: the benchmark's PIL rule above (outline included, so masks run
    about half a pixel large). ``rule="coco"``: pycocotools' area-sampled rasterization,
    unbiased at edges; polygons under 3 points have no area there and are skipped."""
    if rule == "coco":
        return _coco_mask(task_polygons, int(width), int(height))
    if rule != "official":
        raise ValueError(f"unknown mask rule {rule!r} (official | coco)")
    canvas = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for instance in task_polygons:
        for polygon in instance:
            if len(polygon) < 2:
                continue
            draw.polygon([(int(x), int(y)) for x, y in polygon], outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _coco_mask(task_polygons: list, width: int, height: int) -> np.ndarray:
    from pycocotools import mask as coco_mask

    flat = [np.asarray(p, np.float64).ravel().tolist()
            for inst in task_polygons for p in inst if len(p) >= 3]
    if not flat:
        return np.zeros((height, width), bool)
    rle = coco_mask.merge(coco_mask.frPyObjects(flat, height, width))
    return coco_mask.decode(rle).astype(bool)


def stored_mask(task_polygons: list, width: int, height: int, size: int, masks) -> np.ndarray:
    """The mask as stored in shards: rasterized at the annotated size by ``masks.rule``,
    then reduced to ``size``x``size`` by the coverage rule of ``resize_mask``."""
    full = polygons_to_mask(task_polygons, width, height, masks.rule)
    return resize_mask(full, size, size, masks.binarize_threshold)


def polygon_problem(task_polygons: list, width: int, height: int) -> str | None:
    """A skip reason when the polygons cannot give a trustworthy mask, else None."""
    points = [pt for inst in task_polygons for poly in inst for pt in poly]
    if not points:
        return "polygon_empty"
    if any(not (math.isfinite(x) and math.isfinite(y)) for x, y in points):
        return "polygon_not_finite"
    mx, my = FAR_OUTSIDE * width, FAR_OUTSIDE * height
    if any(x < -mx or x > width + mx or y < -my or y > height + my for x, y in points):
        return "polygon_far_outside_image"
    if all(len(poly) < 2 for inst in task_polygons for poly in inst):
        return "polygon_degenerate"
    return None


def degenerate_polygon_count(task_polygons: list) -> int:
    """Polygons the official rule skips (< 2 points) or draws as a line (2 points)."""
    return sum(1 for inst in task_polygons for poly in inst if len(poly) < 3)


def resize_mask(mask: np.ndarray, width: int, height: int, threshold: float = 0.5) -> np.ndarray:
    """Binarization rule for stored masks: an output pixel is foreground when at least
    ``threshold`` of its footprint on the full-resolution mask is foreground, fractional
    source pixels counted by the share they cover (exact area coverage, also when
    enlarging).

    Computed from the mask's summed-area table: the integral of a pixel-constant image
    is bilinear inside each pixel, so interpolating the table at the footprints' edges
    gives each footprint's coverage exactly. (OpenCV's INTER_AREA computes the same
    coverage when shrinking, but at a non-integer ratio it takes a slow path: ~4x the
    time here.)"""
    h, w = mask.shape
    if (h, w) == (height, width):
        return mask.copy()
    sat = cv2.integral(np.ascontiguousarray(mask, dtype=bool).view(np.uint8))
    r0, rf = _edges(h, height)
    c0, cf = _edges(w, width)
    out = np.empty((height, width), bool)
    # A hair of tolerance so that an exact tie (coverage == threshold) is not lost to
    # floating-point rounding of the interpolation.
    _coverage_at_least(sat, r0, rf, c0, cf, (height / h) * (width / w), threshold - 1e-9, out)
    return out


def _edges(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Output pixel edges in source coordinates, as (cell index, fraction into it)."""
    pos = np.arange(n_out + 1) * (n_in / n_out)
    i0 = np.minimum(pos.astype(np.int64), n_in - 1)
    return i0, pos - i0


@njit(cache=True, nogil=True)
def _coverage_at_least(sat, r0, rf, c0, cf, scale, threshold, out):
    n_c = c0.shape[0]
    prev = np.empty(n_c)
    cur = np.empty(n_c)
    for i in range(r0.shape[0]):
        top, bottom, f = sat[r0[i]], sat[r0[i] + 1], rf[i]
        for j in range(n_c):
            c, g = c0[j], cf[j]
            above = top[c] * (1.0 - g) + top[c + 1] * g
            below = bottom[c] * (1.0 - g) + bottom[c + 1] * g
            cur[j] = above * (1.0 - f) + below * f
        if i > 0:
            for j in range(1, n_c):
                out[i - 1, j - 1] = (cur[j] - cur[j - 1] - prev[j] + prev[j - 1]) * scale >= threshold
        prev, cur = cur, prev
