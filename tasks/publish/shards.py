"""Stage: build one Parquet shard (a deterministic slice of images) and its done-marker.

A shard is all phrase tasks of a batch of images of one split. It is written under a
temporary name, renamed, and only then is its marker ``_done/<split>-<index>.json``
written: a run killed at any point leaves nothing a later run takes for complete.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.config import RunConfig
from schemas.records import LedgerRow, ShardMarker
from schemas.shard import SCHEMA_VERSION, SHARD_SCHEMA
from tasks.acquire.annotations import SkipLog, read_annotation_table
from tasks.acquire.images import load_resized
from tasks.acquire.ledger import OK
from tasks.captions.join import CaptionJoin, load_join
from tasks.core.files import sha256_file, still_owner, write_json_atomic
from tasks.core.shard_plan import ShardSpec, marker_path
from tasks.core.versioning import code_version
from tasks.synthesize.luts import Lut3D
from tasks.synthesize.references import reference_pool
from tasks.synthesize.samples import task_rows

BINARY_COLUMNS = ("target", "composite", "mask")


class ShardWriter:
    """Parquet writer that flushes a row group whenever the pixel bytes pass a budget."""

    def __init__(self, path: Path, metadata: dict[str, str], cfg: RunConfig):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        schema = SHARD_SCHEMA.with_metadata(metadata)
        codec = cfg.shards.compression
        self.writer = pq.ParquetWriter(
            self.tmp, schema,
            # JPEG/PNG bytes neither compress, dictionary-encode nor have useful min/max:
            # skip that work for them.
            compression={n: "none" if n in BINARY_COLUMNS else codec for n in SHARD_SCHEMA.names},
            use_dictionary=["split", "recipe", "lut_fg", "lut_bg", "caption_model", "phrase_name"],
            write_statistics=[n for n in SHARD_SCHEMA.names if n not in BINARY_COLUMNS],
        )
        self.budget = cfg.shards.row_group_bytes
        self.rows: list[dict[str, Any]] = []
        self.pending_bytes = 0
        self.total_rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.pending_bytes += sum(len(row[c]) for c in BINARY_COLUMNS)
        if self.pending_bytes >= self.budget:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=SHARD_SCHEMA))
            self.total_rows += len(self.rows)
            self.rows, self.pending_bytes = [], 0

    def close(self, extra_metadata: dict[str, str]) -> None:
        """Finish the temporary file; ``publish`` renames it into place."""
        self.flush()
        self.writer.add_key_value_metadata(extra_metadata)
        self.writer.close()

    def publish(self) -> None:
        self.tmp.replace(self.path)

    def abort(self) -> None:
        try:
            if self.writer.is_open:
                self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# In a worker process of the processes runner: the pid of the build that started it.
WORKER_PARENT: int | None = None


class ShardStopped(Exception):
    """The shard was not published: its build was cancelled (Ctrl-C revokes the folder
    token) or died, or another build owns the folder now."""


def _may_publish(out_dir: Path, token: str | None) -> bool:
    """Publish only for a live build that still owns the folder: a worker orphaned by a
    killed build (or one whose folder a later build took) writes nothing."""
    if WORKER_PARENT is not None and os.getppid() != WORKER_PARENT:
        return False
    return still_owner(out_dir, token)


def build_shard(cfg: RunConfig, spec: ShardSpec, ledger: dict[int, LedgerRow], luts: dict[str, Lut3D],
                luts_version: str, token: str | None = None, captions: bool = False) -> ShardMarker:
    """Write ``spec``'s shard and marker; return the marker (rows, bytes, sha256, stats).

    ``ledger`` holds the acquisition rows of the shard's images (status and sha256);
    ``luts`` / ``luts_version``: the config's look pool and library version
    (``lut_library.pool_for`` / ``version_for``);
    ``token`` is the folder lock's (``files.exclusive``): nothing is published once the
    build that issued it has lost the folder. ``captions``: join the shard's caption and
    phrase-embedding parts (else those columns are null).
    """
    out_dir = cfg.out_dir
    path = out_dir / spec.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    annotations = read_annotation_table(cfg.annotations_path)
    mine = annotations.filter(pc.is_in(annotations["image_id"], pa.array(spec.image_ids, pa.int64())))
    by_image: dict[int, list[dict[str, Any]]] = {}
    for task in mine.drop_columns(["ann_ids", "instance_boxes", "digest"]).to_pylist():
        by_image.setdefault(task["image_id"], []).append(task)
    refs = reference_pool(cfg.annotations_path, cfg.annotations_path.stat().st_mtime_ns,
                          cfg.images_dir, cfg.synthesis.size, cfg.masks)
    skips, notes = SkipLog(), Counter()
    tried: dict[int, str] = {}  # reference image id -> sha256 of what was read
    text = load_join(out_dir, spec.split, spec.index) if captions else CaptionJoin()
    meta = {"phraseharmony.schema_version": SCHEMA_VERSION,
            "phraseharmony.config_hash": cfg.config_hash(),
            "phraseharmony.code_version": code_version(),
            "phraseharmony.lut_library_version": luts_version,
            "phraseharmony.shard": spec.name,
            "phraseharmony.clip_model": text.clip_model,
            "phraseharmony.clip_dim": text.clip_dim}
    writer = ShardWriter(path, meta, cfg)
    try:
        for image_id in spec.image_ids:
            image_tasks = sorted(by_image.get(image_id, []), key=lambda t: t["task_id"])
            status = ledger.get(image_id, {}).get("status", "pending")
            decoded = (load_resized(cfg.images_dir, image_id, cfg.synthesis.size)
                       if status == OK else None)
            if decoded is None:
                reason = f"image_{status}" if status != OK else "image_unreadable"
                for task in image_tasks:
                    skips.add(reason, task["task_id"])
                continue
            img, orig = decoded
            if image_tasks and orig != (image_tasks[0]["image_width"], image_tasks[0]["image_height"]):
                notes["image_size_mismatch"] += 1
            for task in image_tasks:
                if not _may_publish(out_dir, token):
                    raise ShardStopped(f"{spec.name}: stopped: its build was cancelled or no "
                                       f"longer owns {out_dir}")
                for row in task_rows(task, img, orig, cfg, luts, refs, skips, notes, tried, text):
                    writer.add(row)
        total = writer.total_rows + len(writer.rows)
        stats = {"rows": total, "images": len(spec.image_ids), "tasks": mine.num_rows,
                 "skips": skips.to_json(), "notes": dict(sorted(notes.items()))}
        writer.close({"phraseharmony.stats": json.dumps(stats, sort_keys=True)})
        if not _may_publish(out_dir, token):
            raise ShardStopped(f"{spec.name}: stopped: its build was cancelled or no longer "
                               f"owns {out_dir}")
        writer.publish()
    except BaseException:
        writer.abort()
        raise
    marker = {"shard": spec.name, "path": spec.relpath, "split": spec.split,
              "rows": total, "bytes": path.stat().st_size, "sha256": sha256_file(path),
              "config_hash": cfg.config_hash(), "code_version": code_version(),
              "inputs_digest": spec.inputs_digest,
              "references": sorted([i, t] for i, t in tried.items()), **stats}
    marker_path(out_dir, spec).parent.mkdir(exist_ok=True)
    if not _may_publish(out_dir, token):
        raise ShardStopped(f"{spec.name}: stopped: its build was cancelled or no longer owns {out_dir}")
    write_json_atomic(marker_path(out_dir, spec), marker)
    return marker
