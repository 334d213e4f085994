"""Stage: ``_manifest.json``, written last: its presence means the dataset is complete."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from schemas.config import RunConfig
from schemas.errors import UserError
from schemas.records import Manifest, ShardMarker
from schemas.shard import SCHEMA_VERSION
from tasks.acquire.annotations import SkipLog
from tasks.core.files import write_json_atomic
from tasks.core.versioning import code_version

MANIFEST_NAME = "_manifest.json"


def source_ids(out_dir: Path, markers: list[ShardMarker], images: dict[int, dict[str, Any]]
               ) -> dict[str, dict[str, list[int]]]:
    """Per split, the COCO and Flickr ids of the photos its rows were made from: Visual
    Genome shares photos with both, and so do iHarmony4's HCOCO and HFlickr, so an
    evaluation there can leave out what training saw (``train.overlap``). Reads only
    the shards' image_id column."""
    found: dict[str, dict[str, set[int]]] = {}
    for m in markers:
        ids = pq.read_table(out_dir / m["path"], columns=["image_id"]).column("image_id").to_pylist()
        split = found.setdefault(m["split"], {"coco_id": set(), "flickr_id": set()})
        for image_id in set(ids):
            record = images.get(image_id) or {}
            for key, held in split.items():
                if isinstance(record.get(key), int):
                    held.add(record[key])
    return {s: {k: sorted(v) for k, v in ids.items()} for s, ids in sorted(found.items())}


def build_manifest(cfg: RunConfig, markers: list[ShardMarker], annotation_files: dict[str, str],
                   annotation_skips: SkipLog, luts_version: str, luts_left_out: list[str],
                   captions_on: bool = False, images: dict[int, dict[str, Any]] | None = None) -> Manifest:
    """``luts_*``: the look library's version and the user files it left out.
    ``images``: the ingested image records (their coco_id / flickr_id go into
    ``source_ids``; None leaves that empty)."""
    skips, notes = SkipLog(), Counter()
    splits: dict[str, dict[str, int]] = {}
    for m in markers:
        skips.merge(SkipLog.from_json(m["skips"]))
        notes.update(m["notes"])
        s = splits.setdefault(m["split"], {"shards": 0, "rows": 0, "images": 0, "tasks": 0})
        s["shards"] += 1
        s["rows"] += m["rows"]
        s["images"] += m["images"]
        s["tasks"] += m["tasks"]
    return {
        "name": cfg.name,
        "schema_version": SCHEMA_VERSION,
        "config_hash": cfg.config_hash(),
        "code_version": code_version(),
        "lut_library_version": luts_version,
        "luts_left_out": list(luts_left_out),
        "captions": {"setting": cfg.captions.enabled, "on": captions_on,
                     "blip_model": cfg.captions.blip_model, "clip_model": cfg.captions.clip_model},
        "seed": cfg.seed,
        # What decides the bytes (no paths): a later build with other settings says
        # which changed before it rebuilds.
        "config": cfg.output_relevant(),
        "annotation_files": annotation_files,
        "annotation_skips": annotation_skips.to_json(),
        "splits": dict(sorted(splits.items())),
        "totals": {"shards": len(markers), "rows": sum(m["rows"] for m in markers),
                   "bytes": sum(m["bytes"] for m in markers)},
        "skips": skips.to_json(),
        "notes": dict(sorted(notes.items())),
        "shards": [{k: m[k] for k in ("path", "split", "rows", "bytes", "sha256")}
                   for m in sorted(markers, key=lambda m: m["path"])],
        "source_ids": source_ids(cfg.out_dir, markers, images) if images is not None else {},
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> bool:
    """True when the manifest changed (False: identical one already there, untouched)."""
    return write_json_atomic(out_dir / MANIFEST_NAME, manifest)


MANIFEST_KEYS = ("name", "schema_version", "config_hash", "splits", "totals", "skips",
                 "annotation_skips", "notes", "shards")


class ManifestError(UserError, ValueError):
    """No usable manifest: the message names the file and says what to run."""


def read_manifest(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest; the dataset is not complete "
                            "(run `phraseharmony build`)") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: not readable JSON ({exc}); run `phraseharmony build` "
                            "to write it again") from None
    if not isinstance(data, dict) or not all(k in data for k in MANIFEST_KEYS):
        raise ManifestError(f"{path}: not a PhraseHarmony manifest; run `phraseharmony build` "
                            "to write it again")
    return data


def read_manifest_or_none(out_dir: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(out_dir)
    except ManifestError:
        return None
