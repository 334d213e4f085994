"""The realism judge: each reason on a real photo made to show it, bad input, and the
rows judged by eye (tests/fixtures/realism) it is held to."""

import re

import cv2
import numpy as np
import pytest

from bench.realism_eval import judge_rows, labelled_rows, summary
from lut_library import build_library
from schemas.config import RealismConfig
from tasks.acquire.sample_photos import load_photo
from tasks.synthesize.realism import FEATURES, assess, features


@pytest.fixture(scope="module")
def scene():
    """The coffee photo at 256²; the mask is the red saucer's outline, as an annotator
    would draw it (a coloured, textured object in a colourful scene)."""
    img = cv2.resize(load_photo("coffee"), (256, 256), interpolation=cv2.INTER_AREA)
    mask = np.zeros((256, 256), bool)
    cv2.ellipse(mask.view(np.uint8), (118, 146), (84, 103), -10, 0, 360, 1, -1)
    return img, mask


def recolour(img, mask, fn):
    out = img.copy()
    out[mask] = fn(img)[mask]
    return out


def test_a_plausible_light_change_is_kept_and_every_feature_is_finite(scene):
    img, mask = scene
    comp = recolour(img, mask, build_library()["exposure_+1.0"].apply)
    f = features(img, comp, mask)
    assert set(f) == set(FEATURES) and all(np.isfinite(v) for v in f.values())
    assert assess(img, comp, mask) == []


def test_white_parts_given_a_strong_colour_are_painted(scene):
    """The saucer's outline takes in the white cup. An uncorrected 2700 K tungsten cast
    turns the cup's white orange (chroma ~58), what blind raters called a repainted
    object (a white cup, a cap's crown, a silver spoon turned gold); a warm fade tints
    it less, and a region with no white part measures 0."""
    img, mask = scene
    lib = build_library()
    tungsten = recolour(img, mask, lib["wb_2700k"].apply)
    assert features(img, tungsten, mask)["neutral_chroma"] > 50
    assert "neutral_painted" in assess(img, tungsten, mask)
    fade = recolour(img, mask, lib["combo_warm_fade"].apply)
    assert 20 < features(img, fade, mask)["neutral_chroma"] < RealismConfig().max_neutral_chroma
    assert "neutral_painted" not in assess(img, fade, mask)
    red = mask & (img[..., 0].astype(int) - img[..., 2] > 60)   # the saucer's red only
    assert features(img, recolour(img, red, lib["wb_2700k"].apply), red)["neutral_chroma"] == 0.0


def test_invisible_change(scene):
    img, mask = scene
    comp = recolour(img, mask, lambda x: np.clip(x.astype(int) + 2, 0, 255).astype(np.uint8))
    assert "invisible_change" in assess(img, comp, mask)


def test_greyed_foreground_and_hue_rotation(scene):
    img, mask = scene
    lib = build_library(min_delta_e=0)
    assert "fg_greyed" in assess(img, recolour(img, mask, lib["saturation_0.0"].apply), mask)
    swapped = recolour(img, mask, lambda x: np.ascontiguousarray(x[..., ::-1]))   # red saucer -> blue
    assert "hue_rotated" in assess(img, swapped, mask)


def _chroma_times(img, k):
    """``img`` with its CIELAB chroma multiplied by ``k`` (8-bit Lab, clipped)."""
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 1:] = (lab[..., 1:] - 128) * k + 128
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def test_a_coloured_region_painted_more_saturated_and_a_pale_one_tinted(scene):
    """The red saucer (chroma 47) with its chroma multiplied: painted. The white rocket
    (chroma 17) under a warm light gains more, relatively: kept at 4500 K (1.8x), painted
    past 2x (3800 K: 2.2x), as blind raters called a white rocket, a spoon and a shuttle
    turned gold at 2.0-2.4x; the golden hour look paints its white body outright."""
    img, mask = scene
    painted = recolour(img, mask, lambda x: _chroma_times(x, 2.5))
    f = features(img, painted, mask)
    assert f["fg_chroma"] > 40 and f["fg_chroma_ratio"] > 1.6
    assert "fg_oversaturated" in assess(img, painted, mask)
    assert "fg_oversaturated" not in assess(img, recolour(img, mask, lambda x: _chroma_times(x, 1.4)), mask)
    rocket = cv2.resize(load_photo("rocket"), (256, 256), interpolation=cv2.INTER_AREA)
    body = np.zeros((256, 256), bool)
    body[85:235, 123:133] = True                                   # the rocket's white body
    lib = build_library()
    warm = recolour(rocket, body, lib["wb_4500k"].apply)
    f = features(rocket, warm, body)
    assert RealismConfig().chromatic < f["fg_chroma"] < 30 and 1.6 < f["fg_chroma_ratio"] < 2
    assert "fg_oversaturated" not in assess(rocket, warm, body)   # (too small a change to see)
    warmer = recolour(rocket, body, lib["wb_3800k"].apply)
    assert 2 < features(rocket, warmer, body)["fg_chroma_ratio"] < 2.5
    assert assess(rocket, warmer, body) == ["fg_oversaturated"]
    golden = recolour(rocket, body, lib["combo_golden_hour"].apply)
    assert assess(rocket, golden, body) == ["fg_oversaturated", "neutral_painted"]


def test_colour_foreground_in_a_monochrome_scene(scene):
    img, mask = scene
    grey = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    target = np.where(mask[..., None], img, grey)           # the scene grey, the saucer not
    comp = recolour(target, mask, build_library()["exposure_+0.6"].apply)
    assert "mono_scene" in assess(target, comp, mask)


def test_chroma_speckle_texture_and_clipping(scene):
    img, mask = scene
    rng = np.random.default_rng(0)
    noisy = img.astype(np.int16)
    noisy[..., 0] += rng.integers(-40, 41, img.shape[:2]).astype(np.int16)
    noisy[..., 2] -= rng.integers(-40, 41, img.shape[:2]).astype(np.int16)
    speckled = recolour(img, mask, lambda x: np.clip(noisy, 0, 255).astype(np.uint8))
    assert "chroma_speckle" in assess(img, speckled, mask)
    flat = recolour(img, mask, lambda x: cv2.blur(build_library()["wb_9000k"].apply(x), (15, 15)))
    assert "texture_changed" in assess(img, flat, mask)
    blown = recolour(img, mask, lambda x: np.clip(x.astype(int) + 230, 0, 255).astype(np.uint8))
    assert "new_clipping" in assess(img, blown, mask)


def test_boundary_halo(scene):
    """The mask's edge band changed unlike its interior: background taken into a transfer."""
    img, mask = scene
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    comp = recolour(img, mask, build_library()["combo_golden_hour"].apply)
    comp[mask & ~inner] = 20                                   # a dark fringe
    assert "boundary_halo" in assess(img, comp, mask)


def test_bad_input_is_a_reason_never_a_crash_or_nan(scene):
    img, mask = scene
    assert assess(img, img, np.zeros_like(mask)) == ["mask_empty"]
    thin = np.zeros_like(mask)
    thin[100, 20:200] = True                                  # nothing left after erosion
    assert assess(img, img, thin) == ["mask_too_thin"]
    flat_t = np.full_like(img, 128)                           # zero variance everywhere
    flat_c = np.full_like(img, 128)
    flat_c[mask] = (180, 60, 60)
    f = features(flat_t, flat_c, mask)
    assert all(np.isfinite(v) for v in f.values())
    with pytest.raises(ValueError, match=r"target \(256, 256, 3\) and composite \(100, 256, 3\) differ"):
        assess(img, img[:100], mask)


@pytest.mark.parametrize("change, says", [
    (lambda t, m: (t.astype(np.uint16) * 257, t.astype(np.uint16) * 257, m),
     "target is a uint16 array of shape (256, 256, 3); want uint8 RGB"),
    (lambda t, m: (t / 255.0, t, m), "target is a float64 array"),
    (lambda t, m: (t, t.astype(np.int64), m), "composite is a int64 array"),
    (lambda t, m: (np.dstack([t, t[..., :1]]), t, m), "target is a uint8 array of shape (256, 256, 4)"),
    (lambda t, m: (t[..., 0], t, m), "target is a uint8 array of shape (256, 256); want"),
    (lambda t, m: (t, t, m.astype(np.float32)), "mask is a float32 array of shape (256, 256); want bool"),
    (lambda t, m: (t, t, m[:100]), "mask is a bool array of shape (100, 256)"),
    (lambda t, m: (t, t, m.astype(np.uint8) * 255), "mask is a uint8 array"),
])
def test_assess_checks_dtypes_and_shapes_at_the_door(scene, change, says):
    """Not a wrong answer (uint16 read as 8-bit gave four reasons) nor numba's internals."""
    img, mask = scene
    with pytest.raises(ValueError, match=re.escape("assess: " + says)):
        assess(*change(img, mask))
    assert assess(img, img, mask.astype(np.uint8)) == assess(img, img, mask)   # 0/1 integers are fine


def test_thresholds_come_from_the_config(scene):
    img, mask = scene
    comp = recolour(img, mask, build_library()["exposure_+1.0"].apply)
    assert assess(img, comp, mask, RealismConfig(min_delta_e=60)) == ["invisible_change"]


def test_the_judge_on_the_rows_judged_by_eye():
    """162 rows of the pre-judge builds, judged blind by two raters on the review's
    sheets (composite | target | outline | 4x difference; docs/realism.md has the
    table); the 134 rows they agree on are the verdicts. The numbers it is held to are
    the ones measured, with a margin for platform noise. Most plausible rows it turns
    down are small regions under the small-region visibility floor (a spoon, a nose, a
    rocket: visible to the raters at 1x, ΔE76 shift x area^1/4 of 4-8)."""
    from bench.realism_eval import rater_verdicts
    from bench.review import kappa

    first, second = rater_verdicts()
    assert kappa(first, second)[1] > 0.7   # the raters agree well beyond chance
    rows = labelled_rows()
    assert len(rows) >= 150 and {r["recipe"] for r in rows} == {
        "lut_pair", "lut_fg", "reinhard", "xiao_rgb", "hist_ycbcr", "idt"}
    s = summary(rows, judge_rows(rows))
    assert sum(s["n"].values()) == 134
    bad = (s["rate"]["absurd"] * s["n"]["absurd"] + s["rate"]["artifact"] * s["n"]["artifact"]) / (
        s["n"]["absurd"] + s["n"]["artifact"])
    assert bad >= 0.85             # 88% (69 of 78)
    assert s["rate"]["no_op"] >= 0.95
    assert s["rate"]["plausible"] <= 0.62   # 58% (18 of 31)
    assert s["precision"] >= 0.80           # 84%


def test_stuff_and_eyewear_phrases_and_box_masks_are_counted_skips():
    from collections import Counter

    from schemas.config import RunConfig
    from tasks.acquire.annotations import SkipLog
    from tasks.synthesize.samples import task_mask

    cfg, skips = RunConfig(), SkipLog()
    square = [[[(10, 10), (90, 10), (90, 90), (10, 90)]]]
    outline = [[[(10, 50), (50, 10), (90, 50), (50, 90)]]]
    task = {"task_id": "1__1", "image_width": 100, "image_height": 100}
    assert task_mask({**task, "phrase_name": "Sky", "polygons": outline}, cfg, skips, Counter()) is None
    assert task_mask({**task, "phrase_name": "sign", "polygons": square}, cfg, skips, Counter()) is None
    for name, kept in (("Glasses ", False), ("sign", True), ("sunglasses", True)):
        got = task_mask({**task, "phrase_name": name, "polygons": outline}, cfg, skips, Counter())
        assert (got is not None) == kept, name
    assert skips.to_json()["counts"] == {"phrase_names_stuff": 1, "phrase_names_see_through": 1,
                                         "mask_box_shaped": 1}


def test_a_region_cut_out_of_a_continuous_surface_has_no_outline(scene):
    """A rectangle inside the plain sky of the rocket photo: the photo shows no edge
    where it ends. The judge says so on any composite of it, the build skips the task
    before drawing, and an object's outline (the saucer) passes."""
    from collections import Counter

    from schemas.config import RunConfig
    from tasks.acquire.annotations import SkipLog
    from tasks.synthesize.realism import mask_outline, mask_outline_contrast
    from tasks.synthesize.samples import task_rows

    sky = cv2.resize(load_photo("rocket"), (256, 256), interpolation=cv2.INTER_AREA)
    patch = np.zeros((256, 256), bool)
    patch[20:70, 170:230] = True
    assert 0 <= mask_outline_contrast(sky, patch) < RealismConfig().min_outline_contrast
    comp = recolour(sky, patch, build_library()["combo_golden_hour"].apply)
    assert "no_outline" in assess(sky, comp, patch)
    img, mask = scene
    assert mask_outline_contrast(img, mask) > 3 * RealismConfig().min_outline_contrast
    # The outline along the image border only is none: not measured, not a reason; a
    # mask too small to keep a pixel at the measuring size neither.
    assert mask_outline_contrast(sky, np.ones((256, 256), bool)) == -1.0
    dot = np.zeros((256, 256), bool)
    dot[100, 100] = True
    assert mask_outline_contrast(sky, dot) == -1.0
    # Measured once per task on the photo (as the build does), or by the judge itself
    # from the target: the same when the target is the photo.
    comp = recolour(img, mask, build_library()["combo_golden_hour"].apply)
    assert features(img, comp, mask, outline=mask_outline(img, mask)) == features(img, comp, mask)

    cfg, skips = RunConfig(), SkipLog()
    task = {"task_id": "1__1", "image_id": 1, "split": "train", "phrase_name": "kite",
            "image_width": 256, "image_height": 256,
            "polygons": [[[(170, 20), (229, 20), (229, 44), (200, 69), (170, 44)]]]}
    assert task_rows(task, sky, (256, 256), cfg, {}, None, skips, Counter()) == []
    assert skips.to_json()["counts"] == {"mask_no_outline": 1}


def test_references_prefer_colourful_well_exposed_objects(scene):
    from tasks.synthesize.references import reference_fit, region_colour

    img, mask = scene
    grey = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    blown = np.clip(img.astype(int) + 200, 0, 255).astype(np.uint8)
    colour, flat, white = (region_colour(x[mask]) for x in (img, grey, blown))
    assert reference_fit(colour, None) > reference_fit(flat, None) > reference_fit(white, None)
    # For a red source, the red object beats the same object turned blue (channel swap).
    blue = region_colour(np.ascontiguousarray(img[..., ::-1])[mask])
    assert reference_fit(colour, colour[1]) > reference_fit(blue, colour[1])


def test_the_one_pass_kernels_give_numpys_values_bit_for_bit():
    """The early decision's fMSE and mean shift and the judge's newly clipped count are
    compiled single passes standing in for numpy and OpenCV expressions: the same
    values, or rows would change."""
    import cv2

    from tasks.synthesize.prejudge import _fmse, _mean_shift
    from tasks.synthesize.realism import _newly_clipped

    rng = np.random.default_rng(5)
    for n in (1, 7, 1000, 1024):
        t, c = rng.integers(0, 256, (2, n, 3), dtype=np.uint8)
        d = c.astype(np.float64) - t.astype(np.float64)
        assert _fmse(t, c) == float((d * d).mean())
        tl, cl = rng.normal(0, 40, (2, n, 3)).astype(np.float32)
        want = cl.astype(np.float64).mean(axis=0) - tl.astype(np.float64).mean(axis=0)
        assert np.array_equal(_mean_shift(tl, cl), want)
    img = rng.choice(np.array([0, 3, 6, 7, 128, 244, 245, 250, 255], np.uint8), (2, 60, 80, 3))
    t, c = img[0], img[1][5:45, 10:70]                    # (a crop: a strided view)
    t = t[5:45, 10:70]
    fg8 = (rng.random((40, 60)) < 0.7).astype(np.uint8)

    def clipped(rgb):
        return cv2.inRange(rgb, (245, 245, 245), (255, 255, 255)) | cv2.inRange(rgb, (0, 0, 0), (6, 6, 6))

    want = cv2.countNonZero(clipped(np.ascontiguousarray(c)) & ~clipped(np.ascontiguousarray(t)) & fg8)
    assert want > 0 and _newly_clipped(t, c, fg8) == want
