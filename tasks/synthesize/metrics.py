"""Composite-vs-target difficulty, with the harmonization papers' definitions.

All on 0-255 values, per image: MSE over H*W*3; fMSE = foreground squared error /
(3*|M|); PSNR = 10*log10(255^2/MSE) with the fixed 255 peak (not the image's range), its
log10 ``fixedmath``'s (a stored value must not depend on the CPU).
ΔE is the mean CIEDE2000 over the foreground (see ``colorimetry``).
"""

from __future__ import annotations

import numpy as np

from tasks.core import fixedmath
from tasks.synthesize.colorimetry import error_sums

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
    return PSNR_CAP if value <= 0 else float(min(PSNR_CAP, 10 * fixedmath.log10(PEAK ** 2 / value)))


def difficulty(composite: np.ndarray, target: np.ndarray, mask: np.ndarray,
               delta_e: float | None = None) -> dict[str, float]:
    """mse, fmse, psnr, delta_e in one compiled pass over the pixels. ``delta_e``: the
    region's mean ΔE when the caller measured it already (``prejudge`` does, on the very
    pixels and in the order this would): it is not measured again."""
    sse, sse_fg, n_fg, measured = error_sums(composite, target, mask, delta_e is None)
    delta_e = measured if delta_e is None else delta_e
    m = sse / (3 * mask.size)
    return {"mse": m, "fmse": sse_fg / (3 * n_fg) if n_fg else 0.0,
            "psnr": psnr_from_mse(m), "delta_e": delta_e}
