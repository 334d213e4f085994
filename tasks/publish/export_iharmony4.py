"""Export a built dataset in iHarmony4's layout, so HT, iSSAM, DucoNet and the rest train
on it unchanged.

``OUT/<Name>/{composite_images, masks, real_images}`` and ``OUT/<Name>/<Name>_{train,test}.txt``
with iHarmony4's naming rule: composite ``r7_1_1.jpg`` -> mask ``r7_1.png`` (drop the
last ``_k``) -> real ``r7.jpg`` (drop the last two). Each row is its own real image (a
``lut_pair`` row's target is the photo under look B), numbered in the dataset's order
(shards by path, rows in order); our val and test splits go to the test list.
``OUT/<Name>/phraseharmony_export.json`` maps every number back to its ``sample_id`` and
records the dataset's manifest hash. The JPEG and PNG bytes are the shards' own (no
re-encoding). Streaming (one row group at a time); a rerun writes only the files that
are missing or differ, so a killed export resumes; a folder holding another dataset's
export is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from schemas.errors import UserError
from tasks.core.files import write_bytes_atomic, write_json_atomic

MAPPING = "phraseharmony_export.json"
# Our split -> the iHarmony4 list it joins.
LISTS = {"train": "train", "val": "test", "test": "test"}


class ExportError(UserError):
    """An export that cannot be done as asked; the message names the folder."""


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_bytes_atomic(path, data)
    return True


def export(dataset: Path, out: Path, splits: tuple[str, ...] = ("train", "test"), name: str = "PhraseHarmony",
           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the export; returns counts (rows, files written, files already right)."""
    dataset, out = Path(dataset), Path(out)
    manifest_path = dataset / "_manifest.json"
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{manifest_path}: not a complete dataset ({exc})") from None
    bad = [s for s in splits if s not in LISTS]
    if bad:
        raise ExportError(f"--splits {','.join(bad)}: want train, val or test")
    digest = hashlib.sha256(raw).hexdigest()[:16]
    root = out / name
    mapping_path = root / MAPPING
    if mapping_path.exists():
        previous = json.loads(mapping_path.read_text())
        if previous.get("manifest_hash") != digest or previous.get("splits") != list(splits):
            raise ExportError(f"{root}: holds an export of {previous.get('dataset')} (manifest "
                              f"{previous.get('manifest_hash')}, splits {previous.get('splits')}); "
                              "export into another folder")
    elif root.exists() and any(root.iterdir()):
        raise ExportError(f"{root}: not empty and not an export of ours; export into another folder")
    for folder in ("composite_images", "masks", "real_images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    header = {"dataset": str(dataset.resolve()), "manifest_hash": digest, "splits": list(splits)}
    if not mapping_path.exists():   # first: a killed export is then recognised and resumed
        write_json_atomic(mapping_path, {**header, "complete": False})
    shards = sorted((s for s in manifest["shards"] if s["split"] in splits), key=lambda s: s["path"])
    total = sum(s["rows"] for s in shards)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    samples: dict[str, str] = {}
    written = same = n = 0
    for shard in shards:
        f = pq.ParquetFile(dataset / shard["path"])
        for g in range(f.num_row_groups):
            table = f.read_row_group(g, columns=["sample_id", "composite", "mask", "target"])
            for row in table.to_pylist():
                base = f"r{n}"
                files = {f"composite_images/{base}_1_1.jpg": row["composite"],
                         f"masks/{base}_1.png": row["mask"], f"real_images/{base}.jpg": row["target"]}
                for rel, data in files.items():
                    if _write_if_changed(root / rel, data):
                        written += 1
                    else:
                        same += 1
                lists[LISTS[shard["split"]]].append(f"{base}_1_1.jpg")
                samples[base] = row["sample_id"]
                n += 1
                if progress:
                    progress(n, total)
    for which, names in lists.items():
        if names or which in {LISTS[s] for s in splits}:
            _write_if_changed(root / f"{name}_{which}.txt", ("\n".join(names) + "\n").encode())
    write_json_atomic(mapping_path, {**header, "complete": True, "rows": n, "samples": samples})
    return {"rows": n, "written": written, "unchanged": same, "root": str(root)}
