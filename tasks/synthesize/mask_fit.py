"""Masks that follow the object: the phrase's polygon mask fitted to the photo's edges.

VGPhraseCut's polygons are hand-drawn and coarse: a cat's polygon takes in the blurred
background along one side, a cup's the saucer under it, a wheel's the floor. Recoloured,
such a mask paints a panel with a hard seam through the background. Before compositing,
OpenCV's GrabCut (Rother et al., 2004) refits the mask at the stored size: the polygon's
pixels are probable foreground, a ring outside it probable background, its core (far
from the outline) sure foreground, so the fit can only move the outline, not drop the
object. The fit is kept when it agrees with the polygon (IoU and mean boundary distance
within the config's bounds); otherwise the polygon is used, and the row says which.

Deterministic: GrabCut's k-means initialisation draws from OpenCV's RNG, seeded before
each fit; its result is the same under other CPU kernels (tests/test_cpu_independence.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_K3 = np.ones((3, 3), np.uint8)
# Background pixels (outside the ring) kept around the crop GrabCut works on.
_CROP_MARGIN = 3


@dataclass(frozen=True)
class Fit:
    mask: np.ndarray            # the mask to composite with (bool, stored size)
    source: str                 # "fitted" | "polygon"
    reason: str | None          # why the polygon was kept (None when fitted)
    iou: float                  # IoU of the fit with the polygon (1.0 when not fitted)
    boundary_px: float          # mean distance between the two outlines, in pixels


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's edge pixels (inside the mask; the image border is no edge)."""
    m8 = mask.astype(np.uint8)
    return (m8 - cv2.erode(m8, _K3, borderType=cv2.BORDER_REPLICATE)) > 0


def boundary_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance (px) from each outline's pixels to the other outline, averaged both ways."""
    ea, eb = outline(a), outline(b)
    if not ea.any() or not eb.any():
        return float("inf")

    def to(edge: np.ndarray) -> np.ndarray:
        return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)

    return float((to(eb)[ea].mean() + to(ea)[eb].mean()) / 2)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def fit_mask(img: np.ndarray, polygon: np.ndarray, cfg) -> Fit:
    """``polygon`` (bool, the stored size) fitted to ``img`` (uint8 RGB of that size) with
    ``cfg`` (``schemas.config.MaskConfig``); the polygon when the fit cannot be trusted."""

    def keep(reason: str, fit_iou: float = 1.0, dist: float = 0.0) -> Fit:
        return Fit(polygon, "polygon", reason, fit_iou, dist)

    if not cfg.fit:
        return keep("fit_off")
    n = int(polygon.sum())
    if n < cfg.fit_min_pixels:
        return keep("fit_too_small")
    ring = cfg.fit_ring_px
    p8 = polygon.astype(np.uint8)
    around = cv2.dilate(p8, _K3, iterations=ring) > 0
    if int(around.sum()) - n < cfg.fit_min_pixels:
        return keep("fit_no_background")   # the polygon is (nearly) the whole image
    ys, xs = np.nonzero(around)
    h, w = polygon.shape
    y0, y1 = max(0, ys.min() - _CROP_MARGIN), min(h, ys.max() + _CROP_MARGIN + 1)
    x0, x1 = max(0, xs.min() - _CROP_MARGIN), min(w, xs.max() + _CROP_MARGIN + 1)
    crop = p8[y0:y1, x0:x1]
    labels = np.full(crop.shape, cv2.GC_BGD, np.uint8)
    labels[around[y0:y1, x0:x1]] = cv2.GC_PR_BGD
    labels[crop > 0] = cv2.GC_PR_FGD
    # The core: sure foreground (the fit may move the outline, not drop the object).
    inside = cv2.distanceTransform(np.pad(crop, 1), cv2.DIST_L2, cv2.DIST_MASK_5)[1:-1, 1:-1]
    labels[inside > cfg.fit_core * inside.max()] = cv2.GC_FGD
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(img[y0:y1, x0:x1, ::-1]), labels, None, bgd, fgd,
                    cfg.fit_iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return keep("fit_failed")   # e.g. a region of one colour: no mixture to learn
    fitted = np.zeros_like(polygon)
    fitted[y0:y1, x0:x1] = (labels & 1) > 0
    # One piece per polygon piece at most: specks GrabCut keeps in the ring are dropped.
    fitted = _without_specks(fitted, cfg.fit_min_pixels)
    fit_iou, dist = iou(fitted, polygon), boundary_distance(fitted, polygon)
    if fit_iou < cfg.fit_min_iou:
        return keep("fit_disagrees", fit_iou, dist)
    if dist > cfg.fit_max_boundary_px:
        return keep("fit_moves_too_far", fit_iou, dist)
    return Fit(fitted, "fitted", None, fit_iou, dist)


def _without_specks(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
    return keep[lab]
