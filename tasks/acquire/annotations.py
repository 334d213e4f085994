"""Stage 1: VGPhraseCut annotation JSON -> validated records -> annotations table.

Bad records inside a file are skipped and counted by reason (with file and index), so
one broken task never stops the build; a file that is not what the format says (not
JSON, not an array) is a clear error naming the file. Records past the configured size
bounds (``annotations.limits``) are skips too, so no single record can exhaust memory.
The split of an image is the split file's: a task in another split's file, or a task id
seen in an earlier file, is skipped (an image's pixels never land in two splits).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.acquire.annotation_fetch import ensure_files
from tasks.acquire.json_stream import TOO_DEEP, iter_json_array
from tasks.acquire.json_stream import JsonFileError as AnnotationError  # noqa: F401 (re-exported)
from tasks.core.files import read_record, sha256_file, write_json_atomic

IMAGE_KEYS = ("image_id", "coco_id", "flickr_id", "width", "height", "url", "split")
TASK_KEYS = ("task_id", "image_id", "ann_ids", "instance_boxes", "Polygons", "phrase",
             "phrase_structure")
# Rows converted to Arrow at a time while streaming (bounds the Python objects alive).
BATCH_ROWS = 20_000
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
    # Digest of all the above: what a shard's done-marker records of its tasks.
    ("digest", pa.string()),
])
# The splits a task file may hold images of: miniv is a subset of val.
COMPATIBLE_SPLITS = {"val": {"val", "miniv"}, "miniv": {"val", "miniv"}}


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
    """The whole array as a list (for the small files)."""
    return list(iter_json_array(path))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def validate_image_record(rec: Any, max_pixels: int = 2**31 - 1) -> str | None:
    """None when the record is usable, else a short skip reason. A claimed size above
    ``max_pixels`` is refused here: masks are rasterised at the claimed size."""
    if not isinstance(rec, dict):
        return "image_not_an_object"
    missing = [k for k in ("image_id", "width", "height", "split") if k not in rec]
    if missing:
        return f"image_missing_key:{missing[0]}"
    if not _is_int(rec["image_id"]) or rec["image_id"] < 0:
        return "image_bad_id"
    if not (_is_int(rec["width"]) and _is_int(rec["height"])) or min(rec["width"], rec["height"]) <= 0:
        return "image_bad_size"
    if rec["width"] * rec["height"] > max_pixels:
        return "image_too_large"
    if not isinstance(rec["split"], str):
        return "image_bad_split"
    return None


def iter_image_records(path: Path, splits: Iterable[str] | None = None,
                       rejected: list[tuple[str, str]] | None = None,
                       max_pixels: int = 2**31 - 1,
                       rejected_ids: set[int] | None = None) -> Iterator[dict[str, Any]]:
    """Stream valid image records (of ``splits``, when given) from image_data_split.json.
    Rejected records go to ``rejected`` as ("file[index]", reason); duplicates of an id
    already seen are rejected, the first one is kept."""
    wanted = set(splits) if splits is not None else None
    seen: set[int] = set()
    for i, rec in enumerate(iter_json_array(path)):
        reason = validate_image_record(rec, max_pixels)
        if reason is None and rec["image_id"] in seen:
            reason = "image_duplicate_id"
        if reason:
            if rejected is not None:
                rejected.append((f"{path.name}[{i}]", reason))
            if rejected_ids is not None and isinstance(rec, dict) and _is_int(rec.get("image_id")):
                rejected_ids.add(rec["image_id"])
            continue
        seen.add(rec["image_id"])
        if wanted is None or rec["split"] in wanted:
            yield rec


def load_images(path: Path, skips: SkipLog, max_pixels: int = 2**31 - 1,
                rejected_ids: set[int] | None = None) -> dict[int, dict[str, Any]]:
    """image_id -> record for every valid image record; duplicates are skipped (the
    ids of skipped records go to ``rejected_ids``)."""
    rejected: list[tuple[str, str]] = []
    images = {rec["image_id"]: rec
              for rec in iter_image_records(path, rejected=rejected, max_pixels=max_pixels,
                                            rejected_ids=rejected_ids)}
    for where, reason in rejected:
        skips.add(reason, where)
    return images


def clean_polygons(polys: Any, max_points: int = 2**62) -> list | str:
    """A task's ``Polygons`` as plain float lists, or a skip reason. Each polygon is
    checked as one NumPy array (shape (n, 2), numeric, finite): per-point Python checks
    dominated the ingest of the 310k-task file."""
    if not isinstance(polys, list):
        return "task_bad_polygons"
    out = []
    points = 0
    for inst in polys:
        if not isinstance(inst, list):
            return "task_bad_polygons"
        clean = []
        for poly in inst:
            if not isinstance(poly, list):
                return "task_bad_polygons"
            try:
                arr = np.asarray(poly) if poly else np.empty((0, 2))
            except ValueError:  # ragged
                return "task_bad_polygons"
            if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "iuf":
                return "task_bad_polygons"
            points += len(arr)
            if points > max_points:
                return "task_too_many_points"
            arr = arr.astype(np.float64, copy=False)
            if not np.isfinite(arr).all():
                return "polygon_not_finite"
            clean.append(arr.tolist())
        out.append(clean)
    return out


def _has_too_deep(value: Any) -> bool:
    if value is TOO_DEEP:
        return True
    if isinstance(value, list):
        return any(_has_too_deep(v) for v in value)
    if isinstance(value, dict):
        return any(_has_too_deep(v) for v in value.values())
    return False


def validate_task(task: Any, limits=None) -> str | None:
    """None when the task has the official keys and types and stays within ``limits``
    (``annotations.limits``), else a skip reason."""
    if not isinstance(task, dict):
        return "task_not_an_object"
    if _has_too_deep(task):
        return "task_nested_too_deep"
    for key in TASK_KEYS:
        if key not in task:
            return f"task_missing_key:{key}"
    if not isinstance(task["task_id"], str) or not _is_int(task["image_id"]):
        return "task_bad_id"
    if not isinstance(task["phrase"], str) or not task["phrase"].strip():
        return "task_bad_phrase"
    if limits is not None and (len(task["phrase"]) > limits.max_phrase_chars
                               or len(task["task_id"]) > limits.max_phrase_chars):
        return "task_phrase_too_long"
    ann_ids = task["ann_ids"]
    if not isinstance(ann_ids, list) or not ann_ids or not all(_is_int(a) for a in ann_ids):
        return "task_bad_ann_ids"
    if limits is not None and len(ann_ids) > limits.max_instances:
        return "task_too_many_instances"
    if not isinstance(task["Polygons"], list) or len(task["Polygons"]) != len(ann_ids):
        return "task_bad_polygons"
    boxes = task["instance_boxes"]
    if not isinstance(boxes, list) or not all(
            isinstance(b, list) and len(b) == 4 and all(_is_num(c) for c in b) for b in boxes):
        return "task_bad_boxes"
    ps = task["phrase_structure"]
    if not isinstance(ps, dict) or not isinstance(ps.get("name"), str):
        return "task_bad_phrase_structure"
    attributes, relations = ps.get("attributes") or [], ps.get("relation_descriptions") or []
    if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
        return "task_bad_phrase_structure"
    if not isinstance(relations, list) or not all(
            isinstance(r, str) or isinstance(r, list) and all(isinstance(x, str) for x in r)
            for r in relations):
        return "task_bad_phrase_structure"
    if limits is not None and sum(map(len, [ps["name"], *attributes, *map(str, relations)])) \
            > limits.max_phrase_chars:
        return "task_phrase_too_long"
    return None


def _relations(ps: dict[str, Any]) -> list[list[str]]:
    return [list(rel) if isinstance(rel, list) else [rel]
            for rel in ps.get("relation_descriptions") or []]


def row_digest(row: dict[str, Any]) -> str:
    """A content digest of one table row: any edit of the task (its polygons, phrase,
    structure, or its image's annotated size) changes it."""
    blob = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def task_rows(tasks: Iterable[Any], images: dict[int, dict[str, Any]], split: str,
              source: str, skips: SkipLog, limits=None,
              seen: set[str] | None = None,
              rejected_images: set[int] = frozenset()) -> Iterator[dict[str, Any]]:
    """Validated table rows from raw tasks (a generator: records stream through).
    ``seen`` holds the task ids of files read before (duplicates across files);
    ``rejected_images`` the ids of image records that were skipped."""
    seen = set() if seen is None else seen
    allowed = COMPATIBLE_SPLITS.get(split, {split})
    max_points = limits.max_points if limits is not None else 2**62
    for i, task in enumerate(tasks):
        where = f"{source}[{i}]"
        reason = validate_task(task, limits)
        if reason is None and task["image_id"] not in images:
            reason = ("task_image_record_skipped" if task["image_id"] in rejected_images
                      else "task_image_not_in_split_file")
        if reason is None and images[task["image_id"]]["split"] not in allowed:
            reason = "task_split_differs_from_image_split"
        if reason is None and task["task_id"] in seen:
            reason = "task_duplicate_id"
        polygons = clean_polygons(task["Polygons"], max_points) if reason is None else None
        if isinstance(polygons, str):
            reason = polygons
        if reason:
            skips.add(reason, where)
            continue
        seen.add(task["task_id"])
        ps = task["phrase_structure"]
        row = {
            "task_id": task["task_id"],
            "image_id": task["image_id"],
            "split": split,
            "phrase": task["phrase"],
            "phrase_name": ps["name"],
            "phrase_attributes": list(ps.get("attributes") or []),
            "phrase_relations": _relations(ps),
            "image_width": images[task["image_id"]]["width"],
            "image_height": images[task["image_id"]]["height"],
            "ann_ids": task["ann_ids"],
            "instance_boxes": [[float(c) for c in b] for b in task["instance_boxes"]],
            "polygons": polygons,
        }
        row["digest"] = row_digest(row)
        yield row


def build_annotation_table(ann_dir: Path, splits: Iterable[str], limits=None,
                           max_pixels: int = 2**31 - 1
                           ) -> tuple[pa.Table, dict[int, dict], SkipLog, dict[str, str]]:
    """Read the official files of ``splits`` from ``ann_dir``.

    Returns the table (in file order; ``write_annotation_table`` sorts it), the image
    records used, the skip log and the sha256 of each file read.
    """
    skips = SkipLog()
    split_path = ann_dir / "image_data_split.json"
    rejected_ids: set[int] = set()
    images = load_images(split_path, skips, max_pixels, rejected_ids)
    hashes = {split_path.name: sha256_file(split_path)}
    batches: list[pa.RecordBatch] = []
    seen: set[str] = set()
    depth = limits.max_depth if limits is not None else 64
    for split in splits:
        path = ann_dir / f"refer_{split}.json"
        hashes[path.name] = sha256_file(path)
        rows = task_rows(iter_json_array(path, depth), images, split, path.name, skips, limits, seen,
                         rejected_ids)
        # Python objects for one batch at a time; Arrow holds the rest compactly.
        while batch := list(itertools.islice(rows, BATCH_ROWS)):
            batches.append(pa.RecordBatch.from_pylist(batch, schema=ANNOTATION_SCHEMA))
    table = pa.Table.from_batches(batches, schema=ANNOTATION_SCHEMA)
    used = set(table["image_id"].unique().to_pylist())
    return table, {i: images[i] for i in sorted(used)}, skips, hashes


def write_annotation_table(table: pa.Table, path: Path) -> None:
    """Sorted by (image_id, task_id), the order the shard plan relies on, as Arrow IPC,
    uncompressed: every shard task memory-maps it (shared page cache, random access to
    any task's polygons for references) instead of parsing a copy. Sorted rows are taken
    and written a chunk at a time, so the sort never holds a second copy of the table."""
    order = pc.sort_indices(table, sort_keys=[("image_id", "ascending"), ("task_id", "ascending")])
    tmp = path.with_name(f".{path.name}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        for start in range(0, len(order), BATCH_ROWS):
            writer.write_table(table.take(order[start:start + BATCH_ROWS]))
    tmp.replace(path)


def read_annotation_table(path: Path) -> pa.Table:
    """Zero-copy view of the annotations table (memory-mapped)."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


# --- the stage as a whole -------------------------------------------------------------

INGEST_SIDECAR = "annotations.json"
log = logging.getLogger("phraseharmony.annotations")


def ingest_key(cfg, hashes: dict[str, str]) -> dict[str, Any]:
    """Everything the table is made from: the files' content, the splits, the bounds on
    records and images, and the code that reads them."""
    from tasks.core.versioning import code_version

    return {"files": hashes, "splits": list(cfg.annotations.splits),
            "limits": cfg.annotations.limits.model_dump(mode="json"),
            "max_pixels": cfg.images.max_pixels, "code_version": code_version()}


def table_rows_or_none(path: Path) -> int | None:
    """The row count of a readable annotations table, None when it is missing or damaged."""
    try:
        return read_annotation_table(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def ingest(cfg, reuse_only: bool = False) -> dict[str, Any] | None:
    """Convert the configured annotation files to ``OUT/annotations.arrow``.

    Skipped when the sidecar records the same ``ingest_key`` and the table on disk is
    whole; a damaged table or sidecar is named in the log and rebuilt. Returns image
    records, skip log and input hashes. ``reuse_only``: fetch and write nothing; None
    when the table is not current.
    """
    out_dir: Path = cfg.out_dir
    sidecar = out_dir / INGEST_SIDECAR
    ann_dir = Path(cfg.annotations.dir)
    names = ["image_data_split.json"] + [f"refer_{s}.json" for s in cfg.annotations.splits]
    if reuse_only:
        if not all((ann_dir / n).is_file() for n in names):
            return None
        hashes = {n: sha256_file(ann_dir / n) for n in names}
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            hashes = ensure_files(cfg.annotations, names, cfg.images)
        except FileNotFoundError as exc:
            raise AnnotationError(str(exc)) from None
    key = ingest_key(cfg, hashes)
    previous = read_sidecar(sidecar)
    if previous is not None and previous.get("key") == key:
        if table_rows_or_none(cfg.annotations_path) == previous.get("rows"):
            return {"images": {int(k): v for k, v in previous["images"].items()},
                    "skips": previous["skips"], "files": hashes, "rows": previous["rows"],
                    "reused": True}
        if not reuse_only:
            log.warning("%s: missing or damaged; rebuilding it from the annotation files",
                        cfg.annotations_path)
    if reuse_only:
        return None
    table, images, skips, hashes = build_annotation_table(
        ann_dir, cfg.annotations.splits, cfg.annotations.limits, cfg.images.max_pixels)
    write_annotation_table(table, cfg.annotations_path)
    result = {"key": key, "rows": table.num_rows, "skips": skips.to_json(),
              "images": {str(k): v for k, v in images.items()}}
    write_json_atomic(sidecar, result)
    return {"images": images, "skips": result["skips"], "files": hashes,
            "rows": table.num_rows, "reused": False}


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The ingest sidecar, or None (a damaged one is named in the log)."""
    return read_record(path, ("key", "rows", "skips", "images"),
                       "damaged; the annotations are ingested again")
