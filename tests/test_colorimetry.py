"""Our compiled CIELAB/CIEDE2000 against scikit-image's reference implementation."""

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from tasks.core import fixedmath
from tasks.synthesize.colorimetry import DELTA_E_MAX_PIXELS, ciede2000, error_sums, srgb_to_lab


def test_lab_matches_skimage():
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, size=(5000, 3), dtype=np.uint8)
    # skimage uses a rounder sRGB->XYZ matrix (white maps to a*=-0.002); 0.01 covers it.
    assert np.abs(srgb_to_lab(px) - rgb2lab(px[None] / 255.0)[0]).max() < 1e-2
    assert np.abs(srgb_to_lab(np.array([255, 255, 255], np.uint8)) - [100, 0, 0]).max() < 1e-4


def test_ciede2000_matches_skimage_and_sharma_pairs():
    rng = np.random.default_rng(1)
    a = rng.uniform([0, -100, -100], [100, 100, 100], size=(3000, 3))
    b = a + rng.normal(0, 8, size=a.shape)
    ours = np.array([ciede2000(*x, *y) for x, y in zip(a, b)])
    assert np.allclose(ours, deltaE_ciede2000(a, b), atol=1e-6)
    # Published test pairs of Sharma, Wu & Dalal (2005): pairs 1, 7, 17.
    assert abs(ciede2000(50, 2.6772, -79.7751, 50, 0, -82.7485) - 2.0425) < 1e-4
    assert abs(ciede2000(50, 0, 0, 50, -1, 2) - 2.3669) < 1e-4
    assert abs(ciede2000(50, 2.5, 0, 73, 25, -18) - 27.1492) < 1e-4


def test_error_sums_are_exact_and_delta_e_is_a_fair_sample():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, size=a.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((128, 128), bool)
    mask[10:110, 5:120] = True          # 11,500 pixels: delta E is strided
    assert mask.sum() > DELTA_E_MAX_PIXELS
    sse, sse_fg, n_fg, de = error_sums(a, b, mask)
    d = (a.astype(float) - b) ** 2
    assert sse == d.sum() and sse_fg == d[mask].sum() and n_fg == mask.sum()
    full = deltaE_ciede2000(rgb2lab(a[mask][None] / 255.0), rgb2lab(b[mask][None] / 255.0)).mean()
    assert abs(de - full) < 0.1


def test_cbrt_is_within_an_ulp_everywhere():
    """``fixedmath.cbrt`` (CIELAB's cube roots: three per pixel of every ΔE) against the
    correctly rounded root, over CIELAB's inputs and the whole double range, signs and
    special values. Not against numpy's: its SIMD cbrt is off by up to 3 ulps on some CPUs."""
    if np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant:
        pytest.skip("the reference needs an extended-precision long double (x86-64 has one)")
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0.008, 1.1, 100_000), 10.0 ** rng.uniform(-300, 300, 100_000),
                        -rng.uniform(0.0, 2.0, 1_000), np.arange(1.0, 50.0) ** 3])
    got = np.array([fixedmath.cbrt(v) for v in x])
    # The reference: numpy's root refined by one Newton step in 64-bit-mantissa long
    # double (a few ulps' error squared: far below a double's ulp), then rounded.
    xl, y = x.astype(np.longdouble), np.cbrt(x).astype(np.longdouble)
    want = (y - (y * y * y - xl) / (3 * y * y)).astype(np.float64)
    assert (np.abs(got - want) <= np.spacing(np.abs(want))).all()
    assert (got[-49:] == np.arange(1.0, 50.0)).all()          # exact on perfect cubes
    assert fixedmath.cbrt(0.0) == 0.0 and np.isnan(fixedmath.cbrt(np.nan))
    assert fixedmath.cbrt(np.inf) == np.inf and fixedmath.cbrt(-np.inf) == -np.inf
