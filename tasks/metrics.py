"""Composite-vs-target difficulty, with the harmonization papers' definitions.

All on 0-255 values, per image: MSE over H*W*3; fMSE = foreground squared error /
(3*|M|); PSNR = 10*log10(255^2/MSE) with the fixed 255 peak (not the image's range).
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

PEAK = 255.0
# PSNR of identical images is infinite; report this cap instead so columns stay finite.
PSNR_CAP = 100.0


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    d = pred.astype(np.float64) - target.astype(np.float64)
    return float(np.mean(d * d))


def fmse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    n = int(mask.sum())
    if n == 0:
        return 0.0
    d = pred[mask].astype(np.float64) - target[mask].astype(np.float64)
    return float(np.sum(d * d) / (3 * n))


def psnr_from_mse(value: float) -> float:
    return PSNR_CAP if value <= 0 else float(min(PSNR_CAP, 10 * np.log10(PEAK ** 2 / value)))


def mean_delta_e(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean CIEDE2000 over foreground pixels (sRGB, D65)."""
    if not mask.any():
        return 0.0
    a = rgb2lab(pred[mask][None].astype(np.float64) / 255.0)
    b = rgb2lab(target[mask][None].astype(np.float64) / 255.0)
    return float(np.mean(deltaE_ciede2000(a, b)))


def difficulty(composite: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    m = mse(composite, target)
    return {"mse": m, "fmse": fmse(composite, target, mask), "psnr": psnr_from_mse(m),
            "delta_e": mean_delta_e(composite, target, mask)}
