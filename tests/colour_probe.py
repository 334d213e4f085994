"""Digests of the colour work one shard row needs, printed as JSON (run as a script).

``tests/test_cpu_independence.py`` runs this twice, the second time with the CPU-specific
code paths below numpy, OpenCV and numba forced to other kernels, and compares.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZE = 128
CIRCLES = ((64, 64, 36), (45, 80, 25), (85, 50, 30))


def main() -> dict[str, str]:
    from lut_library import build_library
    from schemas.config import MaskConfig, SynthesisConfig
    from tasks.acquire.images import decode_resized
    from tasks.acquire.sample_photos import SAMPLE_PHOTOS, load_photo
    from tasks.synthesize.colorimetry import delta_e_stride
    from tasks.synthesize.composite import draw_looks
    from tasks.synthesize.mask_fit import fit_mask
    from tasks.synthesize.masks import stored_mask
    from tasks.synthesize.metrics import difficulty
    from tasks.synthesize.prejudge import prejudge
    from tasks.synthesize.realism import features
    from tasks.synthesize.samples import encode_jpeg, encode_mask_png
    from tasks.synthesize.transfers import TransferError, transfer

    # The codec path of a row: the photo's JPEG decoded and resized, a polygon mask,
    # the three encodes.
    photos, codec, fits = [], hashlib.sha256(), hashlib.sha256()
    for key in SAMPLE_PHOTOS.values():
        photo = load_photo(key)[..., :3]
        img, _ = decode_resized(cv2.imencode(".jpg", photo[..., ::-1])[1], SIZE)
        h, w = photo.shape[:2]
        polygon = [[[[0.2 * w, 0.3 * h], [0.7 * w, 0.25 * h], [0.8 * w, 0.8 * h], [0.3 * w, 0.9 * h]]]]
        mask = stored_mask(polygon, w, h, SIZE, MaskConfig())
        codec.update(img.tobytes() + encode_jpeg(img, 95) + encode_mask_png(mask))
        photos.append(img)
        # The mask fit (GrabCut: k-means, Gaussian mixtures, a graph cut) on the row's mask.
        fit = fit_mask(img, mask, MaskConfig(fit_min_iou=0.0, fit_max_boundary_px=1e9))
        fits.update(fit.mask.tobytes() + np.array([fit.iou, fit.boundary_px]).tobytes())
    yy, xx = np.mgrid[:SIZE, :SIZE]
    masks = [(yy - cy) ** 2 + (xx - cx) ** 2 < r * r for cy, cx, r in CIRCLES]
    luts = build_library(photographic_only=True)
    digests = {"codec": codec.hexdigest()[:16], "mask fit": fits.hexdigest()[:16]}
    for method in ("reinhard", "xiao_rgb", "hist_ycbcr", "idt", "lut_fg", "lut_pair"):
        pixels, measures = hashlib.sha256(), hashlib.sha256()
        for i, img in enumerate(photos):
            for j, mask in enumerate(masks):
                rng = np.random.default_rng(10 * i + j)
                try:
                    if method.startswith("lut"):
                        target, comp = draw_looks(method, img, mask, luts, rng, 0.9)[:2]
                    else:
                        ref = photos[(i + 1 + j) % len(photos)]
                        target, comp = img, transfer(method, img, mask, ref, masks[(j + 1) % 3], rng)
                except TransferError as err:
                    pixels.update(err.reason.encode())
                    continue
                pixels.update(target.tobytes() + comp.tobytes())
                # The early decision on the region's probe pixels (a choice of rows).
                step = delta_e_stride(mask.sum())
                pixels.update(repr(prejudge(target[mask][::step], comp[mask][::step], float(mask.mean()),
                                            SynthesisConfig())[0]).encode())
                got = {**difficulty(comp, target, mask), **features(target, comp, mask)}
                measures.update(np.array([got[k] for k in sorted(got)], np.float64).tobytes())
        digests[method] = pixels.hexdigest()[:16]
        digests[f"{method} measures"] = measures.hexdigest()[:16]
    digests["look tables"] = _digest(*(lut.table for lut in luts.values()))
    return digests


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def controls() -> dict[str, str]:
    """The functions the row's colour work avoids, on a grid: numpy's SIMD loops and
    libm (glibc picks other code on CPUs without FMA). The test checks that forcing
    other kernels changes these, so an equal row digest means something."""
    import math

    x = np.linspace(0.001, 30.0, 200_001)
    return {"numpy": _digest(np.log10(x), np.sin(x), np.power(x, 2.4), np.arctan2(x, 3.0 - x)),
            "libm": _digest(np.array([math.sin(v) + math.exp(-v) + math.atan2(v, 3.0) for v in x]))}


def kernels() -> dict[str, object]:
    """Which kernels this process got: the test checks that forcing others took effect."""
    from numpy._core._multiarray_umath import __cpu_features__

    try:
        from threadpoolctl import threadpool_info
        blas = sorted(i.get("architecture", "") for i in threadpool_info()
                      if i.get("internal_api") == "openblas")
    except ImportError:
        blas = []
    return {"numpy X86_V3": bool(__cpu_features__.get("X86_V3")),
            "numpy X86_V4": bool(__cpu_features__.get("X86_V4")), "opencv": cv2.getCPUFeaturesLine(),
            "openblas": blas, **controls()}


if __name__ == "__main__":
    print(json.dumps({"digests": main(), "kernels": kernels()}))
