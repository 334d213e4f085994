"""Recipes, per-sample determinism, metric definitions."""

from collections import Counter

import numpy as np
import pytest

from lut_library import build_library
from schemas.config import RealismConfig, SynthesisConfig
from tasks.synthesize.composite import apply_lut_fg, apply_lut_pair, choose_recipe, sample_seed, synthesize
from tasks.synthesize.metrics import PSNR_CAP, difficulty, fmse, mse, psnr_from_mse
from tasks.synthesize.realism import assess, features
from tasks.synthesize.references import Reference


@pytest.fixture(scope="module")
def scene():
    import cv2
    from skimage import data
    img = cv2.resize(data.chelsea(), (128, 128), interpolation=cv2.INTER_AREA)
    mask = np.zeros((128, 128), bool)
    mask[30:90, 40:100] = True
    return img, mask


def test_lut_fg_changes_only_the_foreground(scene):
    img, mask = scene
    lut = build_library()["wb_9000k"]
    target, comp = apply_lut_fg(img, mask, lut)
    assert np.array_equal(target, img)
    assert np.array_equal(comp[~mask], img[~mask])
    assert np.array_equal(comp[mask], lut.apply(img[mask]))


def test_lut_pair_is_ssh_style(scene):
    img, mask = scene
    lib = build_library()
    a, b = lib["exposure_+0.6"], lib["mono_sepia_0.95"]
    target, comp = apply_lut_pair(img, mask, a, b)
    assert np.array_equal(target, b.apply(img))
    assert np.array_equal(comp[~mask], target[~mask])
    assert np.array_equal(comp[mask], a.apply(img)[mask])


def test_same_seed_same_composite_and_seed_depends_on_sample(scene):
    img, mask = scene
    cfg = SynthesisConfig(recipes={"lut_pair": 1, "lut_fg": 1})
    lib = build_library()
    s = sample_seed(0, "1__2#0")
    assert s == sample_seed(0, "1__2#0") and s != sample_seed(0, "1__2#1") != sample_seed(1, "1__2#0")
    assert 0 <= s < 2**63
    r1 = synthesize(img, mask, cfg, np.random.default_rng(s), lib)
    r2 = synthesize(img, mask, cfg, np.random.default_rng(s), lib)
    assert (r1.recipe, r1.lut_fg, r1.lut_bg, r1.strength) == (r2.recipe, r2.lut_fg, r2.lut_bg, r2.strength)
    assert np.array_equal(r1.composite, r2.composite) and np.array_equal(r1.target, r2.target)
    assert r1.metrics["fmse"] >= cfg.realism.min_fmse and r1.metrics["delta_e"] >= cfg.realism.min_delta_e
    assert assess(r1.target, r1.composite, mask) == [] and r1.realism == features(
        r1.target, r1.composite, mask)


def test_lut_pair_strength_is_scaled_and_other_recipes_keep_their_draws(scene):
    img, mask = scene
    lib = build_library()
    loose = RealismConfig(min_delta_e=0, min_fmse=0, min_visibility=0, min_visibility_small=0)
    compared = 0
    for seed in range(12):
        got = {}
        for scale in (1.0, 0.5):
            for recipe in ("lut_pair", "lut_fg"):
                # One attempt: a draw the judge turns down at one strength is not redrawn.
                cfg = SynthesisConfig(recipes={recipe: 1}, pair_strength_scale=scale, realism=loose,
                                      max_attempts=1)
                got[scale, recipe] = synthesize(img, mask, cfg, np.random.default_rng(seed), lib)
        fg = got[1.0, "lut_fg"], got[0.5, "lut_fg"]
        assert isinstance(fg[0], str) == isinstance(fg[1], str)
        assert isinstance(fg[0], str) or (np.array_equal(fg[0].composite, fg[1].composite)
                                          and fg[0].strength == fg[1].strength)
        full, half = got[1.0, "lut_pair"], got[0.5, "lut_pair"]
        if isinstance(full, str) or isinstance(half, str):
            continue
        # The same draw (looks and strength), the pair's strength halved.
        assert (full.lut_fg, full.lut_bg) == (half.lut_fg, half.lut_bg)
        assert half.strength == pytest.approx(full.strength * 0.5) and 0.9 <= full.strength <= 1.0
        compared += 1
    assert compared >= 3


def test_floor_and_ceiling_reject_and_count(scene):
    img, mask = scene
    lib = build_library()
    rejections = Counter()
    cfg = SynthesisConfig(realism=RealismConfig(min_fmse=8000), max_fmse=9000, max_attempts=3,
                          recipes={"lut_fg": 1})
    assert synthesize(img, mask, cfg, np.random.default_rng(0), lib, None, rejections) \
        == "invisible_change"
    assert rejections["lut_fg:invisible_change"] == 3 and rejections["judged:lut_fg"] == 3
    cfg = SynthesisConfig(realism=RealismConfig(min_fmse=0, min_delta_e=0), max_fmse=0.5,
                          max_delta_e=0.1, max_attempts=2, recipes={"lut_pair": 1})
    assert synthesize(img, mask, cfg, np.random.default_rng(0), lib) == "fg_change_above_max"


def test_mixture_follows_the_weights(scene):
    img, mask = scene
    cfg = SynthesisConfig(recipes={"lut_pair": 3, "lut_fg": 1})
    picks = Counter(choose_recipe(np.random.default_rng(i), cfg.recipes) for i in range(4000))
    assert abs(picks["lut_pair"] / 4000 - 0.75) < 0.03


def test_transfer_recipe_uses_the_reference_and_records_it(scene):
    img, mask = scene
    import cv2
    from skimage import data
    ref_img = cv2.resize(data.coffee(), (128, 128), interpolation=cv2.INTER_AREA)
    ref = Reference("9__1", ref_img, np.ones((128, 128), bool))
    # (a square on the cat photo is a panel: the seam rule is off for this bookkeeping test)
    cfg = SynthesisConfig(recipes={"reinhard": 1}, realism=RealismConfig(max_seam=1.0))
    out = synthesize(img, mask, cfg, np.random.default_rng(1), build_library(), lambda rng: ref)
    assert out.recipe == "reinhard" and out.reference_task_id == "9__1" and out.lut_fg is None
    assert np.array_equal(out.target, img) and np.array_equal(out.composite[~mask], img[~mask])


def test_no_reference_falls_back_to_a_lut_recipe_and_is_counted(scene):
    img, mask = scene
    rejections = Counter()
    cfg = SynthesisConfig(recipes={"hist_ycbcr": 1, "lut_fg": 0})
    out = synthesize(img, mask, cfg, np.random.default_rng(1), build_library(),
                     lambda rng: "no_same_category_reference", rejections)
    assert out.recipe == "lut_fg" and rejections["hist_ycbcr:no_same_category_reference"] == 1


def test_metric_definitions():
    target = np.zeros((4, 4, 3), np.uint8)
    pred = target.copy()
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True
    pred[0, 0] = 30            # one fg pixel off by 30 in all 3 channels
    assert mse(pred, target) == pytest.approx(3 * 900 / 48)
    assert fmse(pred, target, mask) == pytest.approx(3 * 900 / (3 * 2))
    assert psnr_from_mse(mse(pred, target)) == pytest.approx(10 * np.log10(255**2 / (2700 / 48)))
    assert psnr_from_mse(0.0) == PSNR_CAP
    d = difficulty(pred, target, mask)
    assert d["delta_e"] > 0 and difficulty(target, target, mask)["delta_e"] == 0
