"""The shard plan, and what makes a shard on disk current.

A shard is all phrase tasks of a batch of images of one split. Its **inputs digest**
covers everything its bytes are made from: the config hash, the code version, the LUT
library, each of its images' acquisition outcome (status and sha256), each of its tasks'
content (the ``digest`` column of the annotation table) and, when colour transfers are
on, the content of every same-category group it draws references from (the pick is an
index into the group, so any edit of the group can change it). The reference images a
shard actually read are recorded in its marker with the sha256 of the bytes it read
("unavailable" for one it could not use), and compared with the ledger on the next run:
a reference photo that was truncated and is fixed later rebuilds the shards that tried it.
So a rerun equals a clean build of the current inputs, and redoes only what changed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.config import LUT_RECIPES, RunConfig
from schemas.records import OK, LedgerRow
from tasks.core.files import read_record, sha256_file

log = logging.getLogger("phraseharmony.shards")
UNAVAILABLE = "unavailable"
_SHARD_FILE = re.compile(r"part-(\d{5})\.parquet")
_MARKER_FILE = re.compile(r"([a-z]+)-(\d{5})\.json")
MARKER_KEYS = ("shard", "path", "split", "rows", "bytes", "sha256", "inputs_digest",
               "references", "images", "tasks", "skips", "notes")


@dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    image_ids: tuple[int, ...]
    inputs_digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}"

    @property
    def relpath(self) -> str:
        return f"data/{self.split}/part-{self.index:05d}.parquet"


def marker_path(out_dir: Path, spec: ShardSpec) -> Path:
    # Kept outside data/ so that folder holds only Parquet (readers glob it whole).
    return out_dir / "_done" / f"{spec.name}.json"


def image_token(row: LedgerRow | None) -> str:
    """What a shard saw of one image: the sha256 of a usable one, else why not."""
    if row is None:
        return "pending"
    if row.get("status") == OK and row.get("sha256"):
        return row["sha256"]
    return str(row.get("status", "pending"))


def reference_token(row: LedgerRow | None) -> str:
    """The token a shard records for a reference image it read (``UNAVAILABLE`` when
    the ledger has no usable file for it)."""
    token = image_token(row)
    return token if row is not None and row.get("status") == OK else UNAVAILABLE


def plan_shards(annotations: pa.Table, cfg: RunConfig, ledger: dict[int, LedgerRow],
                lut_version: str, extras: dict[str, str] | None = None) -> list[ShardSpec]:
    """Per split, sorted image ids cut into consecutive batches (stable across runs),
    each with its inputs digest. ``extras``: shard name -> further inputs (the caption
    and phrase-embedding parts it joins)."""
    image_ids = annotations.column("image_id").to_pylist()
    splits = annotations.column("split").to_pylist()
    names = annotations.column("phrase_name").to_pylist()
    digests = annotations.column("digest").to_pylist()
    rows_of: dict[int, list[int]] = {}
    for row, image_id in enumerate(image_ids):
        rows_of.setdefault(image_id, []).append(row)
    groups = _group_digests(splits, names, digests) if uses_references(cfg) else {}
    head = f"{cfg.config_hash()}|{_code_version()}|{lut_version}"
    specs = []
    per = cfg.shards.images_per_shard
    for split in sorted(set(splits)):
        ids = sorted({i for i, s in zip(image_ids, splits) if s == split})
        for start in range(0, len(ids), per):
            batch = tuple(ids[start:start + per])
            h = hashlib.sha256(head.encode())
            keys = set()
            for image_id in batch:
                h.update(f"|{image_id}:{image_token(ledger.get(image_id))}".encode())
                for row in rows_of[image_id]:
                    h.update(digests[row].encode())
                    keys.add(f"{splits[row]}\x00{names[row]}")
            for key in sorted(keys & groups.keys()):
                h.update(groups[key].encode())
            name = f"{split}-{start // per:05d}"
            h.update(f"|{(extras or {}).get(name, '')}".encode())
            specs.append(ShardSpec(split, start // per, batch, h.hexdigest()[:20]))
    return specs


def uses_references(cfg: RunConfig) -> bool:
    return any(w > 0 for r, w in cfg.synthesis.recipes.items() if r not in LUT_RECIPES)


def _group_digests(splits: list[str], names: list[str], digests: list[str]) -> dict[str, str]:
    """(split, phrase_name) -> digest of its tasks, in the table's (image, task) order:
    the candidates a reference is drawn from."""
    groups: dict[str, Any] = {}
    for split, name, digest in zip(splits, names, digests):
        key = f"{split}\x00{name}"
        if key not in groups:
            groups[key] = hashlib.sha256()
        groups[key].update(digest.encode())
    return {k: h.hexdigest() for k, h in groups.items()}


def _code_version() -> str:
    from tasks.core.versioning import code_version

    return code_version()


def read_marker(path: Path) -> dict[str, Any] | None:
    """A shard's marker, or None; a damaged one is named in the log (and rebuilt)."""
    return read_record(path, MARKER_KEYS, "damaged done-marker; its shard is rebuilt")


def completed_marker(out_dir: Path, spec: ShardSpec, ledger: dict[int, LedgerRow],
                     verify: bool = False) -> dict | None:
    """The shard's marker if the shard on disk is complete and current, else None."""
    marker = read_marker(marker_path(out_dir, spec))
    if marker is None or marker["inputs_digest"] != spec.inputs_digest:
        return None
    try:
        if any(reference_token(ledger.get(int(i))) != token for i, token in marker["references"]):
            return None
    except (TypeError, ValueError):
        log.warning("%s: damaged done-marker; its shard is rebuilt", marker_path(out_dir, spec))
        return None
    path = out_dir / spec.relpath
    if not path.exists() or path.stat().st_size != marker["bytes"]:
        return None
    if verify and sha256_file(path) != marker["sha256"]:
        return None
    return marker


def remove_stale(out_dir: Path, specs: list[ShardSpec]) -> list[str]:
    """Delete shards and markers the plan no longer has (an image moved split, a split
    was dropped) and temporary files of killed runs. Only files named as this pipeline
    names them are touched. Returns what was removed (relative paths)."""
    removed = []
    # Shards (data/, markers in _done/) and the caption parts that mirror them.
    for parts, done in (("data", "_done"), ("captions", "captions/_done"),
                        ("phrase_embeddings", "phrase_embeddings/_done")):
        wanted_parts = {f"{parts}/{spec.split}/part-{spec.index:05d}.parquet" for spec in specs}
        wanted_markers = {f"{done}/{spec.name}.json" for spec in specs}
        folder = out_dir / parts
        for path in sorted(folder.glob("*/*")) if folder.is_dir() else []:
            rel = path.relative_to(out_dir).as_posix()
            if (_SHARD_FILE.fullmatch(path.name) and rel not in wanted_parts) or _is_tmp(path):
                path.unlink(missing_ok=True)
                removed.append(rel)
        for path in sorted((out_dir / done).iterdir()) if (out_dir / done).is_dir() else []:
            rel = path.relative_to(out_dir).as_posix()
            if (_MARKER_FILE.fullmatch(path.name) and rel not in wanted_markers) or _is_tmp(path):
                path.unlink(missing_ok=True)
                removed.append(rel)
    for path in sorted(out_dir.glob(".*.tmp")):   # manifest, card, table writes cut short
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def _is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")
