"""``phraseharmony harmonize``: a checkpoint on a user's photo at its own size, by phrase or
by mask, one photo or a folder; every bad input one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_clipseg import cs_cfg
from test_train_runs import cfg
from typer.testing import CliRunner

from conftest import REPO
from flows.cli import app
from lut_library import build_library
from tasks.acquire.sample_photos import load_photo
from train.harmonize import (
    HarmonizeError,
    Harmonizer,
    apply_maps,
    colour_maps,
    read_image,
    read_mask,
)
from train.loop import train


@pytest.fixture(scope="module")
def runs(sample_dataset, clipseg, tmp_path_factory):
    root = tmp_path_factory.mktemp("harmonize-runs")
    train(cs_cfg(sample_dataset, root / "cs", clipseg, "steps=2", "val_every=2"), say=None)
    train(cfg(sample_dataset, root / "ht", "steps=1", "val_every=1"), say=None)
    return {"cs": root / "cs", "ht": root / "ht"}


@pytest.fixture
def photo_file(tmp_path) -> Path:
    path = tmp_path / "cat.jpg"
    Image.fromarray(load_photo("chelsea")[..., :3]).save(path, quality=95)
    return path


def _invoke(*args: str):
    return CliRunner().invoke(app, ["harmonize", *args], catch_exceptions=True)


def test_colour_maps_carry_a_look_to_full_size_far_better_than_a_thumbnail():
    photo = load_photo("astronaut")[..., :3].copy()
    mask = np.zeros(photo.shape[:2], bool)
    mask[100:400, 80:420] = True
    small = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    region = cv2.resize(mask.astype(np.float32), (256, 256), interpolation=cv2.INTER_AREA)
    region = (region > 0.5).astype(float)
    for look in ("combo_golden_hour", "contrast_+0.6", "gamma_1.60"):
        lut = build_library()[look]
        maps = colour_maps(small / 255, lut.apply(small) / 255.0, region)
        full, _ = apply_maps(photo, maps, region.astype(np.float32), mask)
        truth = lut.apply(photo)
        thumb = cv2.resize(lut.apply(small), photo.shape[1::-1], interpolation=cv2.INTER_LINEAR)

        def psnr(a):
            return 10 * np.log10(255**2 / np.mean((a[mask].astype(float) - truth[mask]) ** 2))

        assert psnr(full) > 35 and psnr(full) > psnr(thumb) + 8, (look, psnr(full), psnr(thumb))
        assert np.array_equal(full[~mask], photo[~mask])


def test_by_mask_the_photo_keeps_its_size_and_every_pixel_outside(runs, photo_file, tmp_path):
    photo = np.asarray(Image.open(photo_file))
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[60:220, 120:330] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for run in ("cs", "ht"):   # every kind takes a mask
        out = tmp_path / f"{run}.png"
        res = _invoke(str(photo_file), "--checkpoint", str(runs[run]), "--mask", str(tmp_path / "mask.png"),
                      "-o", str(out), "--show")
        assert res.exit_code == 0, res.output
        got = np.asarray(Image.open(out))
        assert got.shape == photo.shape
        assert np.array_equal(got[mask == 0], photo[mask == 0]) and not np.array_equal(got, photo)
        assert Image.open(tmp_path / f"{run}.show.png").size[1] == 512


def test_by_phrase_and_a_folder_in_batch_with_one_bad_row(runs, photo_file, tmp_path):
    res = _invoke(str(photo_file), "--checkpoint", str(runs["cs"]), "--phrase", "the cat on the left")
    assert res.exit_code == 0, res.output
    assert Image.open(photo_file.with_name("cat.harmonized.png")).size == Image.open(photo_file).size
    (tmp_path / "pairs.csv").write_text("image,phrase\ncat.jpg,the cat\nmissing.jpg,a dog\ncat.jpg,its ear\n")
    res = _invoke(str(tmp_path), "--checkpoint", str(runs["cs"]), "--csv", str(tmp_path / "pairs.csv"),
                  "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert "done: 2 of 3 harmonized" in res.output and "skipped 1: not a readable image" in res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cat.harmonized.png"]


def test_a_phrase_that_finds_nothing_returns_the_photo_and_says_so(runs):
    h = Harmonizer(runs["cs"], "cpu")
    h.threshold = 1.01   # nothing can reach it
    photo = load_photo("coffee")[..., :3].copy()
    result = h(photo, phrase="a giraffe")
    assert result.empty and np.array_equal(result.output, photo) and "no region found" in result.notes[0]


def test_every_bad_input_is_one_line(runs, photo_file, tmp_path):
    cases = [
        ((str(photo_file), "--checkpoint", str(runs["ht"]), "--phrase", "the cat"),
         "a ht model harmonizes a region it is given: pass --mask"),
        ((str(photo_file), "--checkpoint", str(runs["cs"]), "--phrase", "  "), "the phrase is empty"),
        ((str(photo_file), "--checkpoint", str(runs["cs"])), "give --phrase TEXT or --mask"),
    ]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cases.append(((str(tmp_path / "broken.jpg"), "--checkpoint", str(runs["cs"]), "--phrase", "x"),
                  "broken.jpg: not a readable image"))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small-mask.png")
    cases.append(((str(photo_file), "--checkpoint", str(runs["ht"]), "--mask",
                   str(tmp_path / "small-mask.png")), "small-mask.png: the mask is 10x10, the photo 451x300"))
    for args, says in cases:
        res = _invoke(*args)
        assert isinstance(res.exception, HarmonizeError) and says in str(res.exception), (args, res.output)
    # Too long a phrase is cut, and said.
    res = _invoke(str(photo_file), "--checkpoint", str(runs["cs"]), "--phrase", "the red cat " * 40)
    assert res.exit_code == 0 and "longer than CLIP's 77 tokens" in res.output, res.output
    # Through the real entry point: exit 2, one line, no traceback.
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "harmonize", str(photo_file), "--checkpoint",
                           str(runs["ht"]), "--phrase", "the cat"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "pass --mask" in done.stdout and "Traceback" not in done.stderr


def test_photos_of_every_mode_are_read_upright(tmp_path):
    rgb = load_photo("chelsea")[..., :3]
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "deep.png")
    for name, says in (("grey.png", "grey image"), ("alpha.png", "alpha channel is ignored"),
                       ("deep.png", "16-bit grey")):
        img, notes = read_image(tmp_path / name)
        assert img.dtype == np.uint8 and img.shape == rgb.shape and says in notes[0], (name, notes)
    # EXIF orientation 6 (rotate 90° clockwise to view): the photo comes out upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    img, _ = read_image(tmp_path / "turned.jpg")
    assert img.shape == (rgb.shape[1], rgb.shape[0], 3)
    with pytest.raises(HarmonizeError, match="the mask is"):
        read_mask(tmp_path / "grey.png", (5, 5))


def test_a_huge_photo_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    import train.harmonize

    Image.fromarray(load_photo("coffee")[..., :3]).save(tmp_path / "big.png")
    monkeypatch.setattr(train.harmonize, "MAX_PIXELS", 100_000)
    with pytest.raises(HarmonizeError, match=r"big.png: 600x400 is over 0.1 MP; downscale it first"):
        read_image(tmp_path / "big.png")
