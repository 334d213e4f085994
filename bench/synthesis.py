"""Per-sample synthesis speed at 256x256 against the codec floor, in one run.

    .venv/bin/python bench/synthesis.py [--samples 600]

Full path per sample (one core): decode the photo's JPEG bytes -> resize -> the task's
mask (the polygon fitted to the photo, made once per task beforehand, as the build
does) -> recipe (LUTs, quality filter with its metrics) -> encode target, composite
(JPEG) and mask (1-bit PNG).
Codec floor, same photos: decode -> resize -> the same three encodes, nothing else.
The full path judges each LUT draw on a subsample of the region first
(``tasks.synthesize.prejudge``); the same path without it, in the same run, is the baseline for
that (and the outcomes of the two are compared sample by sample). The mask fit
(GrabCut, ``tasks.synthesize.mask_fit``) runs once per task, not per sample: timed on its own.
Realism judge alone: ``tasks.synthesize.composite.judge`` (features + thresholds) on kept
``lut_pair`` triples as the build runs it on each draw (the photo's outline contrast
measured once per task and passed in), against the full ``lut_pair`` path (which
includes it); beside it, that once-per-task measurement, and ``assess`` on a bare triple
(which measures everything itself).
Inputs are the bundled sample's real photos and hand-drawn polygons, the tasks the build
draws composites for (stuff phrases and masks with no outline in the photo are skipped
before any draw, as the build does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas.config import SAMPLE_ANNOTATIONS, MaskConfig, SynthesisConfig, load_config  # noqa: E402
from tasks.acquire.images import decode_resized  # noqa: E402
from tasks.synthesize.composite import judge, sample_seed, synthesize  # noqa: E402
from tasks.synthesize.mask_fit import fit_mask  # noqa: E402
from tasks.synthesize.masks import stored_mask  # noqa: E402
from tasks.synthesize.prejudge import probe  # noqa: E402
from tasks.synthesize.realism import assess, mask_outline, mask_outline_contrast  # noqa: E402
from tasks.synthesize.samples import encode_jpeg, encode_mask_png, phrase_skip  # noqa: E402


def load_inputs(tmp: Path):
    from tasks.acquire.sample_photos import materialize

    materialize(tmp)
    records = json.loads((SAMPLE_ANNOTATIONS / "image_data_split.json").read_text())
    images = {r["image_id"]: r for r in records}
    tasks = []
    for split in ("train", "val", "test"):
        tasks += json.loads((SAMPLE_ANNOTATIONS / f"refer_{split}.json").read_text())
    data = {i: (tmp / f"{i}.jpg").read_bytes() for i in images}
    return images, tasks, data


def run(n, fn) -> float:
    t0 = time.perf_counter()
    for k in range(n):
        fn(k)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=600)
    a = ap.parse_args()
    import tempfile

    from lut_library import pool_for
    from schemas.config import LutsConfig

    images, tasks, data = load_inputs(Path(tempfile.mkdtemp(prefix="ph-synth-")))
    cv2.setNumThreads(1)  # per core: OpenCV would otherwise use both
    luts = pool_for(LutsConfig())  # the looks composites draw from (default config)
    masks = MaskConfig()
    size, q = 256, 95
    tasks = drawn_for(tasks, images, data, masks, size)
    rejections: Counter = Counter()

    def floor(k):
        img, _ = decode_resized(data[tasks[k % len(tasks)]["image_id"]], size)
        mask = np.zeros((size, size), bool)
        mask[64:192, 64:192] = True
        encode_jpeg(img, q), encode_jpeg(img, q), encode_mask_png(mask)

    outcomes: dict = {}
    # The mask the build composites with (the polygon fitted to the photo): once per task,
    # so made here, outside the timed paths (its own time is printed below).
    fitted = {}
    for task in tasks:
        rec = images[task["image_id"]]
        img, _ = decode_resized(data[task["image_id"]], size)
        polygon = stored_mask(task["Polygons"], rec["width"], rec["height"], size, masks)
        fitted[task["task_id"]] = fit_mask(img, polygon, masks)
    # The full build's lut_pair strength scale and composites per task
    # (configs/vgphrasecut.yaml): its draws are weaker, so more of them are turned down,
    # most of them early; its per-task work is shared by more samples.
    full_cfg = load_config(ROOT / "configs" / "vgphrasecut.yaml").synthesis
    full_scale = full_cfg.pair_strength_scale
    full_name = f"lut_pair x{full_scale:g}, {full_cfg.composites_per_task}/task"

    def full(recipe, early=True, scale=1.0, per_task=SynthesisConfig().composites_per_task):
        """Sample k is composite k % per_task of task k // per_task, as
        ``tasks.synthesize.samples.task_rows`` makes them: the task's outline and probe
        once, before its first composite, and no two of its composites with the same
        looks."""
        cfg = SynthesisConfig(recipes={recipe: 1.0}, prejudge=early, pair_strength_scale=scale)
        per = {}

        def fn(k):
            task = tasks[(k // per_task) % len(tasks)]
            img, _ = decode_resized(data[task["image_id"]], size)
            fit = fitted[task["task_id"]]
            mask = fit.mask
            if k % per_task == 0 or not per:   # the task's first composite
                per.update(outline=mask_outline(img, mask, fine=fit.source == "fitted"),
                           region=probe(img, mask), drawn=set())
            rng = np.random.default_rng(sample_seed(0, f"{task['task_id']}#{k}"))
            counted = rejections if early and scale == 1.0 else Counter()   # (lut_pair, lut_fg only)
            out = synthesize(img, mask, cfg, rng, luts, None, counted, per["outline"],
                             per["region"], per["drawn"])
            outcomes[(recipe, early, scale, k)] = out if isinstance(out, str) else (out.lut_fg, out.lut_bg,
                                                                                    out.strength)
            if not isinstance(out, str):
                per["drawn"].add((out.recipe, out.lut_fg, out.lut_bg, None))
                encode_jpeg(out.target, q), encode_jpeg(out.composite, q)
            encode_mask_png(mask)
        return fn

    # Warm up: compiled kernels load from numba's cache; every LUT's lattice positions
    # are computed once per process (as in a shard worker, where thousands of samples
    # share them).
    for lut in luts.values():
        lut.positions, lut.flat_table
    run(30, full("lut_pair"))
    run(30, full("lut_fg"))
    triples = judged_triples(tasks, images, data, luts, masks, size)
    results = {}
    for rnd in range(3):  # interleave to spread machine noise over all paths
        results.setdefault("floor", []).append(run(a.samples, floor))
        for recipe in ("lut_pair", "lut_fg"):
            results.setdefault(recipe, []).append(run(a.samples, full(recipe)))
            results.setdefault(recipe + " unprejudged", []).append(
                run(a.samples, full(recipe, early=False)))
        results.setdefault(full_name, []).append(
            run(a.samples, full("lut_pair", scale=full_scale, per_task=full_cfg.composites_per_task)))
        timed = {"judge": lambda t: judge(*t[:4], SynthesisConfig(), t[5]),
                 "outline": lambda t: mask_outline_contrast(t[4], t[2]),
                 "fit": lambda t: fit_mask(t[4], t[2], masks),
                 "assess": lambda t: assess(t[0], t[1], t[2])}
        for name, fn in timed.items():
            t0 = time.perf_counter()
            for k in range(a.samples):
                fn(triples[k % len(triples)])
            results.setdefault(name, []).append(time.perf_counter() - t0)
    best = {k: min(v) / a.samples * 1e3 for k, v in results.items()}
    print(f"{a.samples} samples per path, best of 3 rounds, 1 core, {size}x{size}")
    print(f"  codec floor (decode+resize+3 encodes): {best['floor']:.2f} ms/sample "
          f"({1e3 / best['floor']:.0f}/s)")
    for recipe in ("lut_pair", "lut_fg"):
        names = (recipe, recipe + " unprejudged")
        if recipe == "lut_pair":
            names += (full_name,)
        for name in names:
            ms = best[name]
            print(f"  full path, {name:24s}: {ms:.2f} ms/sample ({1e3 / ms:.0f} samples/s), "
                  f"{ms / best['floor']:.2f}x floor  (target for lut_pair: <= 2.5x)")
        same = sum(outcomes[(recipe, True, 1.0, k)] == outcomes[(recipe, False, 1.0, k)]
                   for k in range(a.samples))
        print(f"    the same outcome (look(s) and strength kept, or the reason none was) with and without "
              f"the prejudge: {same} of {a.samples}")
    print(f"  realism judge alone, per draw: {best['judge']:.2f} ms, "
          f"{best['judge'] / best['lut_pair']:.1%} of a lut_pair sample  (target: <= 15%)")
    print(f"    once per task: the mask fit (GrabCut) {best['fit']:.2f} ms; "
          f"the photo's outline contrast {best['outline']:.2f} ms; "
          f"assess() on a bare triple (all of it): {best['assess']:.2f} ms, "
          f"{best['assess'] / best['lut_pair']:.1%}")
    # Counted over every timed and warm-up sample of each path.
    samples = 30 + 3 * a.samples
    for recipe in ("lut_pair", "lut_fg"):
        drawn = rejections[f"judged:{recipe}"]
        reasons = {k.split(":", 1)[1]: v for k, v in rejections.most_common() if k.startswith(recipe + ":")}
        early = rejections[f"prejudged_{recipe}"]
        print(f"  draws judged per sample, {recipe}: {drawn / samples:.2f}, {early / max(drawn, 1):.0%} "
              f"of them decided on the subsample (reasons given: {reasons})")


def drawn_for(tasks, images, data, masks, size):
    """The tasks the build draws composites for (``tasks.synthesize.samples.task_rows``' checks
    before its draws: the phrase names an object, the photo shows the mask's outline)."""
    syn = SynthesisConfig()
    out = []
    for task in tasks:
        rec = images[task["image_id"]]
        img, _ = decode_resized(data[task["image_id"]], size)
        mask = stored_mask(task["Polygons"], rec["width"], rec["height"], size, masks)
        if (phrase_skip(task["phrase_structure"]["name"], syn) is None
                and mask_outline_contrast(img, mask) >= syn.realism.min_outline_contrast):
            out.append(task)
    return out


def judged_triples(tasks, images, data, luts, masks, size):
    """(target, composite, mask, metrics, photo, the photo's outline contrast) of kept
    lut_pair composites, one per task."""
    cfg = SynthesisConfig(recipes={"lut_pair": 1.0})
    out = []
    for k, task in enumerate(tasks):
        rec = images[task["image_id"]]
        img, _ = decode_resized(data[task["image_id"]], size)
        mask = stored_mask(task["Polygons"], rec["width"], rec["height"], size, masks)
        outline = mask_outline(img, mask)
        got = synthesize(img, mask, cfg, np.random.default_rng(k), luts, outline=outline)
        if not isinstance(got, str):
            out.append((got.target, got.composite, mask, got.metrics, img, outline))
    return out


if __name__ == "__main__":
    main()
