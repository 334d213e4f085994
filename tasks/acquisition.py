"""Stage: image acquisition into ``OUT/images/<image_id>.jpg`` with a ledger.

Sources here: the bundled sample (photos from installed packages) and a local folder
(``<id>.jpg`` directly or under Visual Genome's ``VG_100K``/``VG_100K_2``). Every image
gets a ledger row; a file is only ever renamed into place after it decoded fully.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from PIL import Image
from prefect import task as prefect_task
from prefect.cache_policies import NO_CACHE

from schemas.records import LedgerRow
from tasks.files import sha256_file

LEDGER_NAME = "_ledger.jsonl"
# Statuses: ok (usable), missing (no source file), corrupt (did not decode),
# too_large (pixel count above the limit). Only "ok" images enter shards.
SETTLED_OK = "ok"
VG_SUBDIRS = ("", "VG_100K", "VG_100K_2")


def image_path(images_dir: Path, image_id: int) -> Path:
    # Built from the integer id only: a record can never choose where we write.
    return images_dir / f"{int(image_id)}.jpg"


def read_ledger(images_dir: Path) -> dict[int, LedgerRow]:
    """image_id -> latest ledger row. A torn last line (killed writer) is ignored."""
    path = images_dir / LEDGER_NAME
    rows: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[int(row["image_id"])] = row
    return rows


def append_ledger(images_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(images_dir / LEDGER_NAME, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def verify_image(path: Path, expected: tuple[int, int], max_pixels: int) -> dict[str, Any]:
    """Decode fully; report status, actual size and whether it matches the annotation."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                return {"status": "too_large", "error": f"{w}x{h} exceeds {max_pixels} pixels"}
            im.load()
    except Exception as exc:  # PIL raises many types for bad bytes
        return {"status": "corrupt", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": SETTLED_OK, "actual_width": w, "actual_height": h,
            "size_mismatch": (w, h) != expected}


def find_source(src_dir: Path, image_id: int) -> Path | None:
    for sub in VG_SUBDIRS:
        candidate = src_dir / sub / f"{int(image_id)}.jpg"
        if candidate.is_file():
            return candidate
    return None


def acquire_from_dir(records: list[dict[str, Any]], src_dir: Path, images_dir: Path,
                     max_pixels: int) -> Counter:
    """Copy and verify each record's image from ``src_dir``; return counts by status.

    An image the ledger marks ok whose file is still there with the same size is not
    touched again, so reruns are cheap.
    """
    images_dir.mkdir(parents=True, exist_ok=True)
    ledger = read_ledger(images_dir)
    counts: Counter = Counter()
    new_rows = []
    for rec in records:
        image_id = int(rec["image_id"])
        dest = image_path(images_dir, image_id)
        prev = ledger.get(image_id)
        if (prev and prev["status"] == SETTLED_OK and dest.exists()
                and dest.stat().st_size == prev["bytes"]):
            counts["already_ok"] += 1
            continue
        row: dict[str, Any] = {"image_id": image_id, "source": "local", "time": time.time(),
                               "attempts": (prev or {}).get("attempts", 0) + 1}
        src = find_source(src_dir, image_id)
        if src is None:
            row.update(status="missing", error=f"no {image_id}.jpg under {src_dir}")
        else:
            row.update(verify_image(src, (rec["width"], rec["height"]), max_pixels))
            if row["status"] == SETTLED_OK:
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
                shutil.copyfile(src, tmp)
                tmp.replace(dest)
                row.update(bytes=dest.stat().st_size, sha256=sha256_file(dest))
        counts[row["status"]] += 1
        new_rows.append(row)
    if new_rows:
        append_ledger(images_dir, new_rows)
    return counts


def acquire(cfg, records: list[dict[str, Any]]) -> Counter:
    """Bring every record's image into ``OUT/images`` from the configured source."""
    if cfg.images.source == "sample":
        from tasks.sample_photos import materialize

        src = cfg.out_dir / "sources" / "sample_photos"
        materialize(src)
    else:
        src = Path(cfg.images.dir)
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: images.dir is not a directory")
    return acquire_from_dir(records, src, cfg.images_dir, cfg.images.max_pixels)


# Resume is decided by the ledger, not Prefect's cache.
acquire_task = prefect_task(name="acquire-images", cache_policy=NO_CACHE, persist_result=False)(acquire)
