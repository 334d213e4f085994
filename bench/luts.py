"""LUT kernel speed and accuracy: ours vs Pillow (C, trilinear) vs colour-science.

    .venv/bin/python bench/luts.py [--repeat 30]

Same photo (a packaged one, resized to 800x600), same 33^3 look, same run. Prints the
median time of each, our/Pillow ratio (target <= 1.0) and our largest difference
from colour-science's tetrahedral interpolation in code values (target <= 1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lut_library import build_library  # noqa: E402
from tasks.acquire.sample_photos import load_photo  # noqa: E402
from tasks.synthesize.lut_kernels import composite_u8  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    fn()  # warm: compile (or load the cached machine code) and touch the memory
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--look", default="split_teal_orange_0.50")
    a = ap.parse_args()

    img = cv2.resize(load_photo("motorcycle"), (800, 600), interpolation=cv2.INTER_AREA)
    lut = build_library()[a.look]
    n = lut.size
    pil_lut = ImageFilter.Color3DLUT(n, lut.table.transpose(2, 1, 0, 3).reshape(-1, 3).tolist())
    pil_img = Image.fromarray(img)

    import colour
    from colour.algebra import table_interpolation_tetrahedral
    c_lut = colour.LUT3D(lut.table.astype(np.float64))
    x = img.astype(np.float64) / 255.0

    ours_t = median_ms(lambda: lut.apply(img), a.repeat)
    ours_l = median_ms(lambda: lut.apply(img, "trilinear"), a.repeat)
    pil = median_ms(lambda: pil_img.filter(pil_lut), a.repeat)
    col = median_ms(lambda: c_lut.apply(x, interpolator=table_interpolation_tetrahedral),
                    max(3, a.repeat // 10))
    mask = np.zeros(img.shape[:2], bool)
    mask[150:450, 200:600] = True
    other = build_library()["exposure_+0.6"]
    fused = median_ms(lambda: composite_u8(img, mask, lut, other), a.repeat)
    two_pass = median_ms(lambda: (other.apply(img), lut.apply(img)), a.repeat)

    ref = (np.clip(c_lut.apply(x, interpolator=table_interpolation_tetrahedral), 0, 1) * 255 + 0.5)
    diff = np.abs(lut.apply(img).astype(int) - ref.astype(np.uint8)).max()
    pil_diff = np.abs(np.asarray(pil_img.filter(pil_lut)).astype(int) - ref.astype(np.uint8)).max()

    print(f"800x600 image, {n}^3 LUT '{a.look}', median of {a.repeat} runs, 1 thread")
    print(f"  ours tetrahedral        {ours_t:7.2f} ms   max |diff| vs colour-science: {diff}")
    print(f"  ours trilinear          {ours_l:7.2f} ms")
    print(f"  Pillow Color3DLUT       {pil:7.2f} ms   max |diff| vs colour-science: {pil_diff}")
    print(f"  colour-science tetra    {col:7.2f} ms")
    print(f"  ratio ours tetrahedral / Pillow: {ours_t / pil:.2f}  (target <= 1.0)")
    print(f"  ratio ours / colour-science:     {ours_t / col:.3f}")
    print(f"  fused pair composite (B everywhere, A on {mask.mean():.0%} mask): {fused:.2f} ms; "
          f"two full passes: {two_pass:.2f} ms")


if __name__ == "__main__":
    main()
