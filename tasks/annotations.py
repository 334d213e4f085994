"""Stage 1: VGPhraseCut annotation JSON -> validated records -> annotations table.

Bad records inside a file are skipped and counted by reason (with file and index), so
one broken task never stops the build; a file that is not what the format says (not
JSON, not an array) is a clear error naming the file.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
from prefect import task as prefect_task
from prefect.cache_policies import NO_CACHE

from tasks.files import sha256_file, write_json_atomic

IMAGE_KEYS = ("image_id", "coco_id", "flickr_id", "width", "height", "url", "split")
TASK_KEYS = ("task_id", "image_id", "ann_ids", "instance_boxes", "Polygons", "phrase",
             "phrase_structure")
# Keep a few examples of each skip reason for the card; counts are always complete.
MAX_EXAMPLES_PER_REASON = 5

ANNOTATION_SCHEMA = pa.schema([
    ("task_id", pa.string()),
    ("image_id", pa.int64()),
    ("split", pa.string()),
    ("phrase", pa.string()),
    ("phrase_name", pa.string()),
    ("phrase_attributes", pa.list_(pa.string())),
    ("phrase_relations", pa.list_(pa.list_(pa.string()))),
    # The image's annotated size: polygons are in these coordinates.
    ("image_width", pa.int32()),
    ("image_height", pa.int32()),
    ("ann_ids", pa.list_(pa.int64())),
    ("instance_boxes", pa.list_(pa.list_(pa.float64()))),
    # instances -> polygons -> points -> [x, y], exactly as in the source file
    ("polygons", pa.list_(pa.list_(pa.list_(pa.list_(pa.float64()))))),
])


class AnnotationError(ValueError):
    """A whole annotation file is unusable; the message names the file."""


@dataclass
class SkipLog:
    """Skips counted by reason, with a few (file, record, detail) examples each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES_PER_REASON:
            bucket.append(where)

    def merge(self, other: "SkipLog") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            bucket = self.examples.setdefault(reason, [])
            bucket.extend(other.examples.get(reason, [])[: MAX_EXAMPLES_PER_REASON - len(bucket)])

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())),
                "examples": {k: v for k, v in sorted(self.examples.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SkipLog":
        return cls(Counter(data.get("counts", {})), dict(data.get("examples", {})))


def read_json_array(path: Path) -> list[Any]:
    """The whole file as a JSON array (files of the sample size; the streaming reader
    for the 344 MB refer_train.json belongs to the acquisition stage)."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise AnnotationError(
            f"{path}: expected a JSON array of records, got a {type(data).__name__}")
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def validate_image_record(rec: Any) -> str | None:
    """None when the record is usable, else a short skip reason."""
    if not isinstance(rec, dict):
        return "image_not_an_object"
    missing = [k for k in ("image_id", "width", "height", "split") if k not in rec]
    if missing:
        return f"image_missing_key:{missing[0]}"
    if not _is_int(rec["image_id"]) or rec["image_id"] < 0:
        return "image_bad_id"
    if not (_is_int(rec["width"]) and _is_int(rec["height"])) or min(rec["width"], rec["height"]) <= 0:
        return "image_bad_size"
    if not isinstance(rec["split"], str):
        return "image_bad_split"
    return None


def load_images(path: Path, skips: SkipLog) -> dict[int, dict[str, Any]]:
    """image_id -> record for every valid image record; duplicates are skipped."""
    images: dict[int, dict[str, Any]] = {}
    for i, rec in enumerate(read_json_array(path)):
        reason = validate_image_record(rec)
        if reason is None and rec["image_id"] in images:
            reason = "image_duplicate_id"
        if reason:
            skips.add(reason, f"{path.name}[{i}]")
            continue
        images[rec["image_id"]] = rec
    return images


def _polygons_ok(polys: Any) -> bool:
    if not isinstance(polys, list):
        return False
    for inst in polys:
        if not isinstance(inst, list):
            return False
        for poly in inst:
            if not isinstance(poly, list):
                return False
            for pt in poly:
                if not (isinstance(pt, list) and len(pt) == 2 and all(_is_num(c) for c in pt)):
                    return False
    return True


def validate_task(task: Any) -> str | None:
    """None when the task has the official keys and types, else a skip reason."""
    if not isinstance(task, dict):
        return "task_not_an_object"
    for key in TASK_KEYS:
        if key not in task:
            return f"task_missing_key:{key}"
    if not isinstance(task["task_id"], str) or not _is_int(task["image_id"]):
        return "task_bad_id"
    if not isinstance(task["phrase"], str) or not task["phrase"].strip():
        return "task_bad_phrase"
    ann_ids = task["ann_ids"]
    if not isinstance(ann_ids, list) or not ann_ids or not all(_is_int(a) for a in ann_ids):
        return "task_bad_ann_ids"
    if not _polygons_ok(task["Polygons"]) or len(task["Polygons"]) != len(ann_ids):
        return "task_bad_polygons"
    boxes = task["instance_boxes"]
    if not isinstance(boxes, list) or not all(
            isinstance(b, list) and len(b) == 4 and all(_is_num(c) for c in b) for b in boxes):
        return "task_bad_boxes"
    ps = task["phrase_structure"]
    if not isinstance(ps, dict) or not isinstance(ps.get("name"), str):
        return "task_bad_phrase_structure"
    if not isinstance(ps.get("attributes", []), list):
        return "task_bad_phrase_structure"
    return None


def _relations(ps: dict[str, Any]) -> list[list[str]]:
    out = []
    for rel in ps.get("relation_descriptions") or []:
        if isinstance(rel, (list, tuple)):
            out.append([str(x) for x in rel])
        else:
            out.append([str(rel)])
    return out


def task_rows(tasks: Iterable[Any], images: dict[int, dict[str, Any]], split: str,
              source: str, skips: SkipLog) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for i, task in enumerate(tasks):
        where = f"{source}[{i}]"
        reason = validate_task(task)
        if reason is None and task["image_id"] not in images:
            reason = "task_image_not_in_split_file"
        if reason is None and task["task_id"] in seen:
            reason = "task_duplicate_id"
        if reason is None and any(not math.isfinite(c) for inst in task["Polygons"]
                                  for poly in inst for pt in poly for c in pt):
            reason = "polygon_not_finite"
        if reason:
            skips.add(reason, where)
            continue
        seen.add(task["task_id"])
        ps = task["phrase_structure"]
        rows.append({
            "task_id": task["task_id"],
            "image_id": task["image_id"],
            "split": split,
            "phrase": task["phrase"],
            "phrase_name": ps["name"],
            "phrase_attributes": [str(a) for a in ps.get("attributes") or []],
            "phrase_relations": _relations(ps),
            "image_width": images[task["image_id"]]["width"],
            "image_height": images[task["image_id"]]["height"],
            "ann_ids": task["ann_ids"],
            "instance_boxes": [[float(c) for c in b] for b in task["instance_boxes"]],
            "polygons": [[[[float(x), float(y)] for x, y in poly] for poly in inst]
                         for inst in task["Polygons"]],
        })
    return rows


def build_annotation_table(ann_dir: Path, splits: Iterable[str]
                           ) -> tuple[pa.Table, dict[int, dict], SkipLog, dict[str, str]]:
    """Read the official files of ``splits`` from ``ann_dir``.

    Returns the table (sorted by image_id, task_id: the shard plan depends on a stable
    order), the image records used, the skip log and the sha256 of each file read.
    """
    skips = SkipLog()
    split_path = ann_dir / "image_data_split.json"
    images = load_images(split_path, skips)
    hashes = {split_path.name: sha256_file(split_path)}
    rows: list[dict[str, Any]] = []
    for split in splits:
        path = ann_dir / f"refer_{split}.json"
        tasks = read_json_array(path)
        hashes[path.name] = sha256_file(path)
        rows.extend(task_rows(tasks, images, split, path.name, skips))
    rows.sort(key=lambda r: (r["image_id"], r["task_id"]))
    table = pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)
    used = {r["image_id"] for r in rows}
    return table, {i: images[i] for i in sorted(used)}, skips, hashes


def write_annotation_table(table: pa.Table, path: Path) -> None:
    """Arrow IPC, uncompressed: every shard task memory-maps it (shared page cache, random
    access to any task's polygons for references) instead of parsing a copy."""
    tmp = path.with_name(f".{path.name}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=65536)
    tmp.replace(path)


def read_annotation_table(path: Path) -> pa.Table:
    """Zero-copy view of the annotations table (memory-mapped)."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


# --- the stage as a whole -------------------------------------------------------------

INGEST_SIDECAR = "annotations.json"


def ingest(cfg) -> dict[str, Any]:
    """Convert the configured annotation files to ``OUT/annotations.arrow``.

    Skipped when the sidecar shows the same input files (by sha256) and splits were
    already converted. Returns image records, skip log and input hashes.
    """
    out_dir: Path = cfg.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar = out_dir / INGEST_SIDECAR
    ann_dir = Path(cfg.annotations.dir)
    names = ["image_data_split.json"] + [f"refer_{s}.json" for s in cfg.annotations.splits]
    for name in names:
        if not (ann_dir / name).is_file():
            raise AnnotationError(f"{ann_dir / name}: file not found (annotations.dir)")
    hashes = {n: sha256_file(ann_dir / n) for n in names}
    try:
        previous = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        previous = None
    if (previous and previous.get("files") == hashes and cfg.annotations_path.exists()
            and previous.get("splits") == list(cfg.annotations.splits)):
        return {"images": {int(k): v for k, v in previous["images"].items()},
                "skips": previous["skips"], "files": hashes, "rows": previous["rows"],
                "reused": True}
    table, images, skips, hashes = build_annotation_table(ann_dir, cfg.annotations.splits)
    write_annotation_table(table, cfg.annotations_path)
    result = {"files": hashes, "splits": list(cfg.annotations.splits), "rows": table.num_rows,
              "skips": skips.to_json(), "images": {str(k): v for k, v in images.items()}}
    write_json_atomic(sidecar, result)
    return {"images": images, "skips": result["skips"], "files": hashes,
            "rows": table.num_rows, "reused": False}


# Resume is decided by the sidecar's input hashes, not Prefect's cache.
ingest_task = prefect_task(name="ingest-annotations", cache_policy=NO_CACHE,
                   persist_result=False)(ingest)
