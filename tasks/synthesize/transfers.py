"""DoveNet's four colour transfers (Cong et al., CVPR 2020), on masked statistics.

Each transfer changes the foreground of a source image so that its colour statistics
match the foreground of a reference image (another photo's object of the same
category). Statistics come from masked pixels only, and from the masks eroded by a few
pixels: VGPhraseCut's polygons are loose, and background pixels in the statistics gave
dark fringes and pale halos. The mapping then applies to every masked pixel, clamped to
the reference's 1st-99th percentile per channel (a transfer cannot invent colours the
reference object does not have). Pixels outside the mask are left alone. All functions
take uint8 pixels and return uint8 pixels; ``fit``: the source pixels the statistics
come from (default: all of ``src``). Products, covariances, rotations and the regrain
solver's inner products go through ``tasks.core.linalg3``, not BLAS/LAPACK, and Reinhard's
log10 and its inverse through ``tasks.core.fixedmath``, not numpy's SIMD loops: a shard must
not depend on which CPU made it.
"""

from __future__ import annotations

import numpy as np

from tasks.core import fixedmath, linalg3

# Reinhard et al. (2001): RGB -> LMS, then log10, then decorrelated l-alpha-beta.
RGB_TO_LMS = np.array([[0.3811, 0.5783, 0.0402],
                       [0.1967, 0.7244, 0.0782],
                       [0.0241, 0.1288, 0.8444]])
LMS_TO_RGB = linalg3.inv(RGB_TO_LMS)
LMS_TO_LAB = linalg3.matmul(np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]),
                            [[1, 1, 1], [1, 1, -2], [1, -1, 0]])
LAB_TO_LMS = linalg3.inv(LMS_TO_LAB)
# Below this, a standard deviation (or covariance eigenvalue) counts as zero.
EPS = 1e-6
# LMS floor before log10 (black pixels): 1/255^2 keeps log10 finite and near black.
LMS_FLOOR = 1.0 / 255.0 ** 2
IDT_ITERATIONS, IDT_BINS = 10, 300
# Regrain's solver: relative residual and iteration cap (the pictures settle well before).
REGRAIN_RTOL, REGRAIN_MAXITER = 1e-4, 200
# Erosion of both masks before statistics, in stored pixels (at 256², polygons stray
# ~1-3 px from the object's edge); and the fewest pixels left to take statistics from.
ERODE_PX = 2
MIN_FIT_PIXELS = 16
# A region with more than this share of blown pixels (every channel >= 250) has no
# colour to transfer from or to: hist_ycbcr turned such regions into speckled blotches.
MAX_BLOWN = 0.25
# The reference's colour range kept: mapped colours are clamped to these percentiles.
CLAMP_PERCENTILES = (1, 99)
# hist_ycbcr's Cb/Cr mappings: at most this many output levels per input level. A
# near-neutral region's few levels of chroma noise, stretched over a colourful
# reference's range, came out as blotches (docs/realism.md, review round 13).
MAX_CHROMA_SLOPE = 2.0


class TransferError(ValueError):
    """A transfer that cannot be done; ``reason`` is the counted skip reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _to_u8(x: np.ndarray) -> np.ndarray:
    if not np.isfinite(x).all():
        raise TransferError("transfer_not_finite")
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _unit(px: np.ndarray) -> np.ndarray:
    return px.reshape(-1, 3).astype(np.float64) / 255.0


def rgb_to_lalphabeta(rgb: np.ndarray) -> np.ndarray:
    return linalg3.apply(fixedmath.log10_array(np.maximum(linalg3.apply(rgb, RGB_TO_LMS), LMS_FLOOR)),
                         LMS_TO_LAB)


def lalphabeta_to_rgb(lab: np.ndarray) -> np.ndarray:
    return linalg3.apply(fixedmath.exp10_array(linalg3.apply(lab, LAB_TO_LMS)), LMS_TO_RGB)


def reinhard(src: np.ndarray, ref: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """Global transfer in l-alpha-beta: (x - mu_s) * sigma_r / sigma_s + mu_r per channel."""
    s, r = rgb_to_lalphabeta(_unit(src)), rgb_to_lalphabeta(_unit(ref))
    f = s if fit is None else rgb_to_lalphabeta(_unit(fit))
    sd_s, sd_r = f.std(axis=0), r.std(axis=0)
    if (sd_s < EPS).any() or (sd_r < EPS).any():
        raise TransferError("transfer_zero_variance")
    out = (s - f.mean(axis=0)) * (sd_r / sd_s) + r.mean(axis=0)
    return _to_u8(lalphabeta_to_rgb(out))


def xiao_rgb_float(src: np.ndarray, ref: np.ndarray, fit: np.ndarray | None = None,
                   align_axes: bool = True) -> np.ndarray:
    """Xiao & Ma (2006) in correlated RGB: match the mean and the full covariance.

    With S = Us Ls Us^T and R = Ur Lr Ur^T, A = Ur Lr^1/2 Ls^-1/2 Us^T gives A S A^T = R.
    An eigenvector's sign is arbitrary, and so is every A that flips one: each reference
    axis is turned to point the way of its source axis (``align_axes``), else a source
    axis maps onto its reference axis reversed, a mirror of the colours along it (texture
    inverted along the weakest axis, in 27% of the sample's object pairs; a channel of
    a light-only change inverted). ``align_axes=False``: the signs LAPACK returns (the
    code before, which the realism fixture replays). Returns unclipped floats on the
    [0, 1] scale.
    """
    x, r = _unit(src), _unit(ref)
    s = x if fit is None else _unit(fit)
    if len(s) < 4 or len(r) < 4:
        raise TransferError("transfer_too_few_pixels")
    ls, us = np.linalg.eigh(linalg3.cov(s))
    lr, ur = np.linalg.eigh(linalg3.cov(r))
    if ls.min() < EPS ** 2 or lr.min() < EPS ** 2:
        raise TransferError("transfer_zero_variance")
    if align_axes:
        ur = ur * np.where((us * ur).sum(axis=0) < 0.0, -1.0, 1.0)
    a = linalg3.matmul(ur * (np.sqrt(lr) / np.sqrt(ls)), us.T)
    return linalg3.apply(x - s.mean(axis=0), a) + r.mean(axis=0)


def xiao_rgb(src: np.ndarray, ref: np.ndarray, fit: np.ndarray | None = None,
             align_axes: bool = True) -> np.ndarray:
    return _to_u8(xiao_rgb_float(src, ref, fit, align_axes))


# ITU-R BT.601 studio-range YCbCr from RGB in [0, 1] (Y 16..235, Cb/Cr 16..240).
_YCC = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
_YCC_OFFSET = np.array([16.0, 128.0, 128.0])
_YCC_RANGE = ((16, 235), (16, 240), (16, 240))
_YCC_INV = linalg3.inv(_YCC)


def hist_ycbcr(src: np.ndarray, ref: np.ndarray, fit: np.ndarray | None = None,
               chroma_slope: float | None = MAX_CHROMA_SLOPE) -> np.ndarray:
    """Cumulative histogram mapping per channel in YCbCr over the studio-range bins,
    the Cb/Cr mappings' steps held to ``chroma_slope`` (None: unlimited, as DoveNet's
    and as before stop 32; the labelled rows' replay uses that)."""
    s = linalg3.apply(_unit(src), _YCC) + _YCC_OFFSET
    r = linalg3.apply(_unit(ref), _YCC) + _YCC_OFFSET
    f = s if fit is None else linalg3.apply(_unit(fit), _YCC) + _YCC_OFFSET
    out = np.empty_like(s)
    for c, (lo, hi) in enumerate(_YCC_RANGE):
        bins = np.arange(lo, hi + 1)
        sq = np.clip(np.rint(s[:, c]), lo, hi).astype(np.int64) - lo
        fq = np.clip(np.rint(f[:, c]), lo, hi).astype(np.int64) - lo
        rq = np.clip(np.rint(r[:, c]), lo, hi).astype(np.int64) - lo
        cdf_s = np.cumsum(np.bincount(fq, minlength=len(bins))) / len(fq)
        cdf_r = np.cumsum(np.bincount(rq, minlength=len(bins))) / len(rq)
        # Each source level goes to the first reference level whose CDF reaches it.
        mapping = bins[np.minimum(np.searchsorted(cdf_r, cdf_s - 1e-12), len(bins) - 1)]
        mapping = _extended(mapping, fq, lo, hi)
        if c > 0 and chroma_slope is not None:
            mapping = _slope_limited(mapping, int(np.median(fq)), chroma_slope)
        out[:, c] = mapping[sq]
    rgb = linalg3.apply(out - _YCC_OFFSET, _YCC_INV)
    return _to_u8(rgb)


def _slope_limited(mapping: np.ndarray, anchor: int, k: float) -> np.ndarray:
    """``mapping`` with its steps held to ``k`` levels per level, out from ``anchor``
    (kept where the match put it): a narrow chroma histogram matched to a wide one would
    stretch JPEG chroma noise into blotches."""
    steps = np.diff(mapping.astype(np.float64))
    out = np.empty(len(mapping))
    out[anchor] = mapping[anchor]
    out[anchor + 1:] = mapping[anchor] + np.cumsum(np.minimum(steps[anchor:], k))
    out[:anchor] = mapping[anchor] - np.cumsum(np.minimum(steps[:anchor], k)[::-1])[::-1]
    return out


def _extended(mapping: np.ndarray, fit_levels: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``mapping`` with the levels outside the fitted pixels' range carried on at slope 1
    from its ends. Matching gives those levels a CDF of 0 (or 1), which sends every level
    below the fit's darkest to the channel's floor: the mask's edge band (left out of
    the fit, often a mix with the background) came out black or, in Cb/Cr, green."""
    first, last = int(fit_levels.min()), int(fit_levels.max())
    levels = np.arange(len(mapping))
    out = mapping.copy()
    out[:first] = np.maximum(lo, mapping[first] - (first - levels[:first]))
    out[last + 1:] = np.minimum(hi, mapping[last] + (levels[last + 1:] - last))
    return out


def _match_1d(x: np.ndarray, y: np.ndarray, bins: int, fit: np.ndarray | None = None) -> np.ndarray:
    """Map samples x so the histogram (``bins`` bins) of ``fit`` (default x) matches y's."""
    f = x if fit is None else fit
    lo, hi = min(f.min(), y.min()), max(f.max(), y.max())
    if hi - lo < EPS:
        return x
    edges = np.linspace(lo, hi, bins + 1)
    cdf_x = np.concatenate([[0.0], np.cumsum(np.histogram(f, edges)[0]) / len(f)])
    cdf_y = np.concatenate([[0.0], np.cumsum(np.histogram(y, edges)[0]) / len(y)])
    # x -> its CDF value (piecewise linear) -> the y value with that CDF.
    u = np.interp(x, edges, cdf_x)
    keep = np.concatenate([[True], np.diff(cdf_y) > 0])  # strictly increasing for interp
    return np.interp(u, cdf_y[keep], edges[keep])


def idt(src: np.ndarray, ref: np.ndarray, rng: np.random.Generator,
        iterations: int = IDT_ITERATIONS, bins: int = IDT_BINS,
        fit: np.ndarray | None = None) -> np.ndarray:
    """Pitié's iterative distribution transfer (N-dimensional PDF transfer): match 1D
    marginals along randomly rotated axes, repeatedly. Returns floats in [0, 1]-ish.
    With ``fit`` (a subset's row indices into ``src``), the marginals matched are the
    subset's, and every pixel moves with them."""
    x, y = _unit(src), _unit(ref)
    rows = np.arange(len(x)) if fit is None else fit
    if x[rows].std(axis=0).max() < EPS or y.std(axis=0).max() < EPS:
        raise TransferError("transfer_zero_variance")
    for _ in range(iterations):
        rot = linalg3.rotation(rng.normal(size=(3, 3)))
        xr, yr = linalg3.apply(x, rot.T), linalg3.apply(y, rot.T)
        moved = np.stack([_match_1d(xr[:, k], yr[:, k], bins, xr[rows, k]) for k in range(3)], axis=1)
        x = x + linalg3.apply(moved - xr, rot)
    return x


def regrain(original: np.ndarray, graded: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pitié's regrain: inside the mask, find J close to the graded colours whose
    gradients follow the original's (restoring grain and edges IDT smears).

    Minimises sum psi*|J - graded|^2 + phi*|dJ - dI|^2 over 4-neighbour pairs inside
    the mask, phi = 30 / (1 + 10*|grad I|) as in the paper, psi = 1; a sparse SPD solve.
    """
    from scipy.sparse import coo_matrix

    h, w = mask.shape
    idx = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(mask)
    n = len(ys)
    idx[ys, xs] = np.arange(n)
    orig = original.astype(np.float64) / 255.0
    gy, gx = np.gradient(orig.mean(axis=2))
    phi_px = 30.0 / (1.0 + 10.0 * np.sqrt(gx * gx + gy * gy))
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.ones(n)]
    rhs = graded.reshape(n, 3).astype(np.float64).copy()
    diag = np.ones(n)
    for dy, dx in ((0, 1), (1, 0)):
        a_ok = (ys + dy < h) & (xs + dx < w)
        p = idx[ys[a_ok], xs[a_ok]]
        q = idx[ys[a_ok] + dy, xs[a_ok] + dx]
        inside = q >= 0
        p, q = p[inside], q[inside]
        py, px = ys[p], xs[p]
        qy, qx = ys[q], xs[q]
        wgt = 0.5 * (phi_px[py, px] + phi_px[qy, qx])
        d = orig[py, px] - orig[qy, qx]                      # target gradient
        np.add.at(diag, p, wgt)
        np.add.at(diag, q, wgt)
        np.add.at(rhs, p, wgt[:, None] * d)
        np.add.at(rhs, q, -wgt[:, None] * d)
        rows += [p, q]
        cols += [q, p]
        vals += [-wgt, -wgt]
    vals[0] = diag
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(n, n)).tocsr()
    out = np.empty((n, 3))
    for c in range(3):
        out[:, c] = conjugate_gradient(a, rhs[:, c], graded.reshape(n, 3)[:, c])
    return _to_u8(out)


def conjugate_gradient(a, b: np.ndarray, x: np.ndarray, rtol: float = REGRAIN_RTOL,
                       maxiter: int = REGRAIN_MAXITER) -> np.ndarray:
    """Solve ``a x = b`` (``a`` sparse SPD) from ``x`` until |r| < rtol |b|: scipy's ``cg``
    step for step, with inner products that do not depend on the CPU's BLAS kernels
    (the sparse product is scipy's own C++ loop, one build for every x86-64 CPU)."""
    x = np.array(x, np.float64)   # (a copy: the start is the caller's)
    r = b - a @ x
    p = r.copy()
    rr, stop = linalg3.dot(r, r), rtol * rtol * linalg3.dot(b, b)
    for _ in range(maxiter):
        if rr < stop:
            break
        q = a @ p
        alpha = rr / linalg3.dot(p, q)
        x += alpha * p
        r -= alpha * q
        rr, rr_prev = linalg3.dot(r, r), rr
        p = r + (rr / rr_prev) * p
    return x


def eroded(mask: np.ndarray, px: int = ERODE_PX) -> np.ndarray:
    """The mask without its ``px``-pixel edge band (where a loose polygon takes in background)."""
    import cv2

    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=px).astype(bool)


def blown_share(px: np.ndarray) -> float:
    from tasks.synthesize.realism import extremes

    return float(np.count_nonzero(extremes(px)[0] >= 250) / len(px)) if len(px) else 0.0


def transfer(method: str, img: np.ndarray, mask: np.ndarray, ref_img: np.ndarray,
             ref_mask: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """The composite: ``img`` with its masked pixels recoloured toward the reference's,
    blended back toward the original by ``1 - strength``."""
    if mask.sum() < 2 or ref_mask.sum() < 2:
        raise TransferError("mask_too_small")
    fit_mask, ref_fit = eroded(mask), eroded(ref_mask)
    if fit_mask.sum() < MIN_FIT_PIXELS:
        raise TransferError("mask_empty_after_erosion")
    if ref_fit.sum() < MIN_FIT_PIXELS:
        raise TransferError("reference_mask_empty_after_erosion")
    src, fit, ref = img[mask], img[fit_mask], ref_img[ref_fit]
    if blown_share(fit) > MAX_BLOWN:
        raise TransferError("source_blown")
    if blown_share(ref) > MAX_BLOWN:
        raise TransferError("reference_blown")
    if method == "reinhard":
        fg = reinhard(src, ref, fit)
    elif method == "xiao_rgb":
        fg = xiao_rgb(src, ref, fit)
    elif method == "hist_ycbcr":
        fg = hist_ycbcr(src, ref, fit)
    elif method == "idt":
        graded = idt(src, ref, rng, fit=np.flatnonzero(fit_mask[mask]))
        if not np.isfinite(graded).all():
            raise TransferError("transfer_not_finite")
        fg = regrain(img, graded, mask)
    else:
        raise ValueError(f"unknown transfer {method!r}")
    # (Percentiles of a few thousand evenly spaced pixels: a full sort per draw cost more
    # than the transfer.)
    lo, hi = np.percentile(ref[::max(1, len(ref) // 4096)], CLAMP_PERCENTILES, axis=0)
    fg = np.clip(fg, np.floor(lo), np.ceil(hi)).astype(np.uint8)
    if strength != 1.0:
        fg = (src + np.float32(strength) * (fg.astype(np.float32) - src) + 0.5).astype(np.uint8)
    out = img.copy()
    out[mask] = fg
    return out
