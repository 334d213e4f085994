"""Annotation ingest at VGPhraseCut scale: time and peak memory, streaming vs json.load.

    .venv/bin/python bench/ingest.py [--tasks 310816 --images 71746]

Writes a synthetic refer_train.json of the real file's size and shape (~344 MB: tasks
with 1-3 instances, polygons of 6-60 float points, phrase structures) plus an
image_data_split.json, then in separate child processes (so each peak RSS is its own):
our ingest (stream -> validate -> Arrow -> annotations.arrow), and the baseline, a plain
``json.load`` of the same file (what the official loader does), which builds nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["man", "woman", "tree", "building", "sky", "shirt", "car", "window", "table", "dog",
         "grass", "sign", "plate", "cloud", "person", "water", "wall", "hand", "head", "chair"]
ATTS = ["white", "black", "blue", "red", "green", "large", "small", "wooden", "tall", "brown"]


def write_inputs(folder: Path, n_tasks: int, n_images: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    images = [{"image_id": i + 1, "coco_id": None, "flickr_id": None, "width": 800, "height": 600,
               "url": f"https://example.invalid/VG_100K/{i + 1}.jpg", "split": "train"}
              for i in range(n_images)]
    (folder / "image_data_split.json").write_text(json.dumps(images))
    ann = 1
    with open(folder / "refer_train.json", "w") as f:
        f.write("[")
        for t in range(n_tasks):
            image_id = 1 + (t * n_images) // n_tasks
            polys, boxes, ids = [], [], []
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                cx, cy, r = rng.uniform(50, 750), rng.uniform(50, 550), rng.uniform(10, 200)
                pts = [[round(cx + r * rng.uniform(-1, 1), 2), round(cy + r * rng.uniform(-1, 1), 2)]
                       for _ in range(rng.randint(6, 60))]
                polys.append([pts])
                boxes.append([cx - r, cy - r, 2 * r, 2 * r])
                ids.append(ann)
                ann += 1
            name, att = rng.choice(NAMES), rng.choice(ATTS)
            task = {"task_id": f"{image_id}__" + "_".join(map(str, ids)), "image_id": image_id,
                    "ann_ids": ids, "instance_boxes": boxes, "Polygons": polys,
                    "phrase": f"{att} {name}", "phrase_structure": {
                        "name": name, "attributes": [att], "relation_ids": [],
                        "relation_descriptions": [], "type": "attribute"}}
            f.write(("," if t else "") + json.dumps(task))
        f.write("]")
    return (folder / "refer_train.json").stat().st_size


def child(kind: str, folder: str) -> dict:
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    out: dict = {}
    if kind in ("ours", "rerun_check"):
        from schemas.config import load_config
        from tasks.acquire.annotations import ingest

        cfg = load_config(None, [f"annotations.dir={folder}", "annotations.splits=[train]"],
                          Path(folder) / "out")
    if kind == "ours":
        res = ingest(cfg)
        out = {"rows": res["rows"], "skips": sum(res["skips"]["counts"].values())}
    elif kind == "rerun_check":
        # What a rerun pays before it knows what to redo: input hashes + the table
        # reused, then every shard's inputs digest (tasks, reference groups, ledger).
        from tasks.acquire.annotations import read_annotation_table
        from tasks.core.shard_plan import plan_shards

        res = ingest(cfg, reuse_only=True)
        t1 = time.perf_counter()
        ledger = {i: {"status": "ok", "sha256": f"{i:064x}"} for i in res["images"]}
        specs = plan_shards(read_annotation_table(cfg.annotations_path), cfg, ledger, "v")
        out = {"rows": res["rows"], "shards": len(specs), "reuse_s": round(t1 - t0, 2),
               "plan_s": round(time.perf_counter() - t1, 2)}
    else:
        with open(Path(folder) / "refer_train.json", "rb") as f:
            out = {"rows": len(json.load(f))}
    out.update(seconds=round(time.perf_counter() - t0, 2),
               peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=310_816)
    ap.add_argument("--images", type=int, default=71_746)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    folder = Path(tempfile.mkdtemp(prefix="ph-ingest-"))
    try:
        t0 = time.perf_counter()
        size = write_inputs(folder, a.tasks, a.images)
        print(f"synthetic refer_train.json: {a.tasks} tasks, {size / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - t0:.0f} s)")
        res = {}
        for kind in ("baseline", "ours", "rerun_check"):
            run = subprocess.run([sys.executable, __file__, "--child", kind, str(folder)],
                                 capture_output=True, text=True, check=True)
            res[kind] = json.loads(run.stdout.strip().splitlines()[-1])
        b, o = res["baseline"], res["ours"]
        print(f"  json.load (baseline, builds nothing): {b['seconds']:7.1f} s, "
              f"peak RSS {b['peak_rss_mib']} MiB")
        print(f"  ours (stream, validate, Arrow, write): {o['seconds']:7.1f} s, peak RSS "
              f"{o['peak_rss_mib']} MiB, {o['rows']} rows, {o['skips']} skipped")
        print(f"  peak RSS ours / baseline: {o['peak_rss_mib'] / b['peak_rss_mib']:.2f}  (target <= 1.5 GiB)")
        r = res["rerun_check"]
        print(f"  rerun check (input hashes, table reused, {r['shards']} shard digests): "
              f"{r['seconds']:.1f} s ({r['reuse_s']} + {r['plan_s']}), peak RSS {r['peak_rss_mib']} MiB")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
