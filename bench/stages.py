"""Time and peak memory of each build stage on a synthetic VGPhraseCut-format input.

    .venv/bin/python bench/stages.py [--images 400] [--images-per-shard 200]

The input is the bundled sample replicated under new image ids (same photos, same
polygons), so every number is on real photos. Each stage runs in its own child process
so its peak RSS is its own. The baseline, measured in the same run, is the codec floor:
decode + resize + the three encodes each row needs, without any colour work.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_input(work: Path, n_images: int, looks: list | None = None) -> tuple[Path, Path]:
    """Annotation files and a photo folder for ``n_images`` images; replica ``i`` is
    graded by ``looks[i % len(looks)]`` (default: the photographic built-in looks)."""
    from schemas.config import SAMPLE_ANNOTATIONS
    from tasks.acquire.sample_photos import materialize

    photos = work / "photos_src"
    materialize(photos)
    base_images = json.loads((SAMPLE_ANNOTATIONS / "image_data_split.json").read_text())
    base_tasks = []
    for split in ("train", "val", "test"):
        base_tasks += json.loads((SAMPLE_ANNOTATIONS / f"refer_{split}.json").read_text())
    ann, img_dir = work / "ann", work / "photos"
    ann.mkdir()
    img_dir.mkdir()
    import cv2
    import numpy as np

    from lut_library import build_library

    # Photographic looks only: a monochrome or channel-swapped replica is no photo of
    # the real data (VGPhraseCut's objects of one category differ in colour for real).
    looks = looks or list(build_library(photographic_only=True).values())
    images, tasks = [], []
    for i in range(n_images):
        src = base_images[i % len(base_images)]
        new_id = 1_000_000 + i
        images.append({**src, "image_id": new_id, "split": "train"})
        # Each replica graded by a different look: same-category references must differ
        # in colour, as other photos of the category do in the real data.
        bgr = cv2.imread(str(photos / f"{src['image_id']}.jpg"))
        graded = looks[i % len(looks)].apply(np.ascontiguousarray(bgr[..., ::-1]))[..., ::-1]
        cv2.imwrite(str(img_dir / f"{new_id}.jpg"), graded, [cv2.IMWRITE_JPEG_QUALITY, 95])
        for t in base_tasks:
            if t["image_id"] == src["image_id"]:
                ids = "_".join(map(str, t["ann_ids"]))
                tasks.append({**t, "image_id": new_id, "task_id": f"{new_id}__{ids}"})
    (ann / "image_data_split.json").write_text(json.dumps(images))
    (ann / "refer_train.json").write_text(json.dumps(tasks))
    return ann, img_dir


def run_stage(stage: str, cfg_args: dict) -> dict:
    """Child side: run one stage, report seconds and peak RSS."""
    from schemas.config import load_config

    cfg = load_config(None, cfg_args["overrides"], cfg_args["out"])
    t0 = time.perf_counter()
    extra: dict = {}
    if stage == "ingest":
        from tasks.acquire.annotations import ingest
        extra["rows"] = ingest(cfg)["rows"]
    elif stage == "acquire":
        from tasks.acquire.annotations import ingest
        from tasks.acquire.downloader import acquire_records
        images = ingest(cfg)["images"]
        t0 = time.perf_counter()
        extra["counts"] = dict(acquire_records(cfg, list(images.values())))
    elif stage == "shards":
        from lut_library import pool_for, version_for
        from tasks.acquire.annotations import ingest
        from tasks.acquire.ledger import read_ledger
        from tasks.publish.build_state import shard_state
        from tasks.publish.shards import build_shard
        ingest(cfg)
        ledger = read_ledger(cfg.images_dir)
        luts, version = pool_for(cfg.luts), version_for(cfg.luts)  # (once per process)
        specs = shard_state(cfg, ledger, version).specs
        t0 = time.perf_counter()
        markers = [build_shard(cfg, s, ledger, luts, version) for s in specs]
        extra.update(rows=sum(m["rows"] for m in markers), shards=len(specs),
                     recipes=_recipe_counts(cfg, markers))
    elif stage == "card":
        from lut_library import left_out_for, version_for
        from tasks.acquire.annotations import SkipLog
        from tasks.publish.card import write_card, write_preview
        from tasks.publish.manifest import build_manifest
        markers = [json.loads(p.read_text()) for p in sorted((cfg.out_dir / "_done").glob("*.json"))]
        manifest = build_manifest(cfg, markers, {}, SkipLog(), version_for(cfg.luts),
                                  left_out_for(cfg.luts))
        write_card(cfg, cfg.out_dir, manifest)
        write_preview(cfg.out_dir, manifest)
    elif stage == "codec_floor":
        extra.update(codec_floor(cfg))
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"stage": stage, "seconds": round(seconds, 3), "peak_rss_mib": round(peak_mib, 1), **extra}


def _recipe_counts(cfg, markers) -> dict:
    import pyarrow.parquet as pq

    counts: dict = {}
    for m in markers:
        for r in pq.read_table(cfg.out_dir / m["path"], columns=["recipe"])["recipe"].to_pylist():
            counts[r] = counts.get(r, 0) + 1
    return counts


def codec_floor(cfg) -> dict:
    """Per row: decode the photo, resize, encode two JPEGs and one PNG mask."""
    import numpy as np

    from tasks.acquire.images import decode_resized
    from tasks.synthesize.samples import encode_jpeg, encode_mask_png

    paths = sorted(cfg.images_dir.glob("*.jpg"))[:40]
    mask = np.zeros((cfg.synthesis.size,) * 2, bool)
    mask[64:192, 64:192] = True
    n, t0 = 0, time.perf_counter()
    for p in paths:
        img, _ = decode_resized(p.read_bytes(), cfg.synthesis.size)
        for _ in range(7):  # ~3.4 phrases x 2 composites per image, as in the sample
            encode_jpeg(img, cfg.synthesis.jpeg_quality)
            encode_jpeg(img, cfg.synthesis.jpeg_quality)
            encode_mask_png(mask)
            n += 1
    return {"floor_rows": n, "floor_seconds": round(time.perf_counter() - t0, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--images-per-shard", type=int, default=200)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--args", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage:
        print(json.dumps(run_stage(a.stage, json.loads(a.args))))
        return
    work = Path(tempfile.mkdtemp(prefix="ph-bench-"))
    try:
        ann, photos = make_input(work, a.images)
        cfg_args = {"out": str(work / "out"), "overrides": [
            f"annotations.dir={ann}", "annotations.splits=[train]", "images.source=local",
            f"images.dir={photos}", f"shards.images_per_shard={a.images_per_shard}"]}
        results = {}
        for stage in ("ingest", "acquire", "shards", "card", "codec_floor"):
            out = subprocess.run([sys.executable, __file__, "--stage", stage, "--args",
                                  json.dumps(cfg_args)], capture_output=True, text=True, check=True)
            results[stage] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s, f = results["shards"], results["codec_floor"]
    per_row = s["seconds"] / s["rows"]
    floor_per_row = f["floor_seconds"] / f["floor_rows"]
    print(f"input: {a.images} images, {results['ingest']['rows']} phrase tasks, "
          f"{s['rows']} rows in {s['shards']} shards (1 process)")
    print(f"{'stage':8s} {'seconds':>8s} {'peak RSS MiB':>13s}")
    for stage in ("ingest", "acquire", "shards", "card"):
        r = results[stage]
        print(f"{stage:8s} {r['seconds']:8.2f} {r['peak_rss_mib']:13.1f}")
    print(f"shards: {s['rows'] / s['seconds']:.0f} rows/s, {per_row * 1e3:.2f} ms/row; "
          f"codec floor {floor_per_row * 1e3:.2f} ms/row; ratio {per_row / floor_per_row:.2f}x floor")
    print(f"rows by recipe: {s['recipes']}")


if __name__ == "__main__":
    main()
