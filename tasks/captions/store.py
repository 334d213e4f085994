"""The captions store: ``captions/<split>/part-NNNNN.parquet`` (one row per image) and
``phrase_embeddings/<split>/part-NNNNN.parquet`` (one row per phrase task), one part per
shard of the shard plan, each written atomically and followed by its done-marker.

A captions part's marker records two digests: ``blip`` (its images' bytes, the BLIP
weights, decoding settings, seed, device kind) and ``clip`` (the blip digest plus the
CLIP weights and device kind). A changed CLIP re-ranks from the stored candidates
without running BLIP; anything else BLIP sees recaptions. A phrase part's digest covers
its tasks' phrases and the CLIP weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.files import read_record, sha256_file, write_json_atomic

log = logging.getLogger("phraseharmony.captions")
CAPTIONS_DIR, PHRASES_DIR = "captions", "phrase_embeddings"
_candidate = pa.struct([("text", pa.string()), ("clip_score", pa.float32())])
CAPTION_SCHEMA = pa.schema([
    ("image_id", pa.int64()),
    ("caption", pa.string()),
    ("caption_candidates", pa.list_(_candidate)),   # best first
    ("caption_clip_score", pa.float32()),
    ("beam_caption", pa.string()),
    # The candidates as generated (beam caption last): a re-rank by another CLIP starts
    # from exactly what a fresh run would.
    ("candidates_generated", pa.list_(pa.string())),
    ("clip_image", pa.list_(pa.float16())),
    ("clip_caption", pa.list_(pa.float16())),
])
PHRASE_SCHEMA = pa.schema([("task_id", pa.string()), ("clip_phrase", pa.list_(pa.float16()))])
MARKER_KEYS = ("part", "digests", "rows", "bytes", "sha256", "skips")


def part_path(out_dir: Path, kind: str, split: str, index: int) -> Path:
    return out_dir / kind / split / f"part-{index:05d}.parquet"


def marker_file(out_dir: Path, kind: str, split: str, index: int) -> Path:
    return out_dir / kind / "_done" / f"{split}-{index:05d}.json"


def digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def read_marker(path: Path) -> dict[str, Any] | None:
    return read_record(path, MARKER_KEYS, "damaged done-marker; its part is computed again")


def current_marker(out_dir: Path, kind: str, split: str, index: int) -> dict[str, Any] | None:
    """The marker of a part whose file is the one it records (size and sha256: parts are
    small, so a truncated or foreign file is never read), else None."""
    marker = read_marker(marker_file(out_dir, kind, split, index))
    path = part_path(out_dir, kind, split, index)
    if marker is None or not path.is_file() or path.stat().st_size != marker["bytes"]:
        return None
    if sha256_file(path) != marker["sha256"]:
        log.warning("%s: differs from its done-marker; computed again", path)
        return None
    return marker


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """A part's rows, or None (named in the log) when it is truncated or not ours."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        log.warning("%s: unreadable (%s); computed again", path, exc)
        return None


def write_part(out_dir: Path, kind: str, split: str, index: int, table: pa.Table,
               metadata: dict[str, str], digests: dict[str, str], skips: dict[str, Any],
               may_publish=lambda: True) -> dict[str, Any]:
    """Write the part under a temporary name, rename it, then write its marker."""
    path = part_path(out_dir, kind, split, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table.replace_schema_metadata({f"phraseharmony.{k}": v for k, v in metadata.items()}),
                       tmp, compression="zstd")
        if not may_publish():
            raise PartStopped(f"{path}: its build was cancelled or lost the folder")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    marker = {"part": f"{kind}/{split}-{index:05d}", "digests": digests, "rows": table.num_rows,
              "bytes": path.stat().st_size, "sha256": sha256_file(path), "skips": skips}
    mpath = marker_file(out_dir, kind, split, index)
    mpath.parent.mkdir(parents=True, exist_ok=True)
    if not may_publish():
        raise PartStopped(f"{path}: its build was cancelled or lost the folder")
    write_json_atomic(mpath, marker)
    return marker


class PartStopped(Exception):
    """A part was not published (its build was cancelled or lost the folder)."""
