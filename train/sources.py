"""Where training rows come from: our Parquet shards, or the iHarmony4 folder layout.

Both present the same two things to the loader: a list of *units* (for shards a
(file, row group) with the selected row indices; for iHarmony4 a chunk of a list file),
and ``read(unit)``, which returns the unit's rows as undecoded bytes plus their
provenance. Planning reads only small columns, never pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from schemas.errors import UserError

MANIFEST_NAME = "_manifest.json"
IHARMONY4_SUBSETS = ("HAdobe5k", "HCOCO", "HFlickr", "Hday2night")
# Lines of an iHarmony4 list per unit: big enough to amortise, small enough to shuffle.
IHARMONY4_UNIT_ROWS = 256


class DataError(UserError, ValueError):
    """The training data cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Unit:
    """One unit of loading work: ``part`` of the source (a shard file or a list chunk),
    ``group`` inside it, and the selected ``rows`` (indices within the group)."""

    part: int
    group: int
    rows: tuple[int, ...]


class ShardSource:
    """A dataset folder written by ``phraseharmony build``."""

    kind = "phraseharmony"
    has_phrases = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST_NAME
        try:
            raw = path.read_bytes()
            self.manifest = json.loads(raw)
            shards = self.manifest["shards"]
        except FileNotFoundError:
            raise DataError(
                f"{path}: no manifest, so the dataset is not complete (finish it with `phraseharmony build`)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{path}: not a dataset manifest ({exc}); rebuild it with `phraseharmony build`"
            ) from None
        # Checkpoints carry this, so a model is always traceable to the exact data.
        self.manifest_hash = hashlib.sha256(raw).hexdigest()[:16]
        shards = sorted(shards, key=lambda s: s["path"])
        self.parts = [self.root / s["path"] for s in shards]
        self._check_sizes(shards)
        self.part_split = [s["split"] for s in shards]
        self._files: dict[int, pq.ParquetFile] = {}

    def _check_sizes(self, shards: list[dict[str, Any]]) -> None:
        """Every shard as long as the manifest says: a missing, cut or replaced file is
        refused at the start, not found mid-epoch. (Not its sha256: that reads the whole
        dataset, minutes at full size; ``phraseharmony inspect --verify`` does it.)"""
        for shard, path in zip(shards, self.parts):
            try:
                size = path.stat().st_size
            except OSError:
                raise DataError(f"{path}: listed in the manifest but missing; rebuild the dataset "
                                "(`phraseharmony build`)") from None
            if "bytes" in shard and size != shard["bytes"]:
                raise DataError(f"{path}: {size} bytes, the manifest says {shard['bytes']}: not the shard "
                                "that was built; rebuild the dataset (`phraseharmony build`)")

    def __getstate__(self) -> dict[str, Any]:
        # Workers open their own file handles (a spawned worker cannot receive them).
        return {**self.__dict__, "_files": {}}

    def _file(self, part: int) -> pq.ParquetFile:
        if part not in self._files:
            path = self.parts[part]
            try:
                self._files[part] = pq.ParquetFile(path, memory_map=True)
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"{path}: cannot read this shard ({exc}); rebuild the dataset (`phraseharmony build`)"
                ) from None
        return self._files[part]

    def splits(self) -> list[str]:
        return sorted(set(self.part_split))

    def units(
        self, split: str, recipes: tuple[str, ...] = (), fg_ratio: tuple[float, float] = (0.0, 1.0)
    ) -> list[Unit]:
        lo, hi = fg_ratio
        out = []
        for part, s in enumerate(self.part_split):
            if s != split:
                continue
            f = self._file(part)
            for g in range(f.num_row_groups):
                try:
                    t = f.read_row_group(g, columns=["recipe", "fg_ratio"])
                except (OSError, ValueError) as exc:
                    raise DataError(f"{self.parts[part]}: row group {g} cannot be read ({exc})") from None
                fg = t.column("fg_ratio").to_numpy()
                keep = (fg >= lo) & (fg <= hi)
                if recipes:
                    keep &= np.isin(t.column("recipe").to_numpy(zero_copy_only=False), list(recipes))
                rows = np.flatnonzero(keep)
                if len(rows):
                    out.append(Unit(part, g, tuple(int(r) for r in rows)))
        return out

    def text_dim(self, units: list[Unit]) -> int | None:
        """The CLIP embedding width of the selected shards (None: built without captions)."""
        dims = {}
        for part in sorted({u.part for u in units}):
            meta = self._file(part).schema_arrow.metadata or {}
            dims[part] = meta.get(b"phraseharmony.clip_dim", b"").decode()
        found = set(dims.values())
        if found == {""} or not found:
            return None
        if "" in found or len(found) > 1:
            where = [str(self.parts[p]) for p, d in dims.items() if d != max(found)]
            raise DataError(
                f"{where[0]}: CLIP embedding width differs from the other shards' "
                f"({sorted(found)}); rebuild the dataset with one CLIP model"
            )
        return int(found.pop())

    def read(self, unit: Unit, text_keys: tuple[str, ...], phrase: bool = False) -> list[dict[str, Any]]:
        columns = ["sample_id", "recipe", "target", "composite", "mask", *(["phrase"] if phrase else []),
                   *text_keys]
        try:
            t = self._file(unit.part).read_row_group(unit.group, columns=columns).take(list(unit.rows))
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{self.parts[unit.part]}: row group {unit.group} cannot be read ({exc})"
            ) from None
        plain = [c for c in columns if c not in text_keys]
        rows = t.select(plain).to_pydict()
        out = [{k: rows[k][i] for k in plain} for i in range(t.num_rows)]
        for key in text_keys:  # list<float16> -> one float16 vector per row (None when null)
            col = t.column(key).combine_chunks()
            values, offsets = col.values.to_numpy(zero_copy_only=False), col.offsets.to_numpy()
            for i, valid in enumerate(col.is_valid().to_numpy(zero_copy_only=False)):
                out[i][key] = values[offsets[i] : offsets[i + 1]] if valid else None
        return out


class IHarmony4Source:
    """iHarmony4 (``IHD_<split>.txt`` or ``<Sub>/<Sub>_<split>.txt`` lists naming
    composites; masks and real images found by the layout's naming rule)."""

    kind = "iharmony4"
    has_phrases = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest_hash = None
        self._lists: dict[str, list[str]] = {}

    def splits(self) -> list[str]:
        return ["test", "train"]

    def _list(self, split: str) -> list[str]:
        if split not in self._lists:
            if split not in ("train", "test"):
                raise DataError(f"{self.root}: iHarmony4 has the splits train and test, not {split!r}")
            names: list[str] = []
            combined = self.root / f"IHD_{split}.txt"
            if combined.exists():
                names = [ln.strip() for ln in combined.read_text().splitlines() if ln.strip()]
                # HT's merged layout: bare names, every sub-dataset in root/composite_images.
                names = [n if "/" in n else f"composite_images/{n}" for n in names]
            else:   # the four sub-datasets, and any other folder in the layout (an export)
                subs = sorted(set(IHARMONY4_SUBSETS) | {d.name for d in self.root.iterdir()
                                                        if (d / f"{d.name}_{split}.txt").is_file()})
                for sub in subs:
                    lst = self.root / sub / f"{sub}_{split}.txt"
                    if lst.exists():
                        names += [
                            f"{sub}/composite_images/{Path(ln.strip()).name}"
                            for ln in lst.read_text().splitlines()
                            if ln.strip()
                        ]
            if not names:
                raise DataError(f"{self.root}: no IHD_{split}.txt and no <Sub>/<Sub>_{split}.txt list")
            self._lists[split] = names
        return self._lists[split]

    def names(self, split: str) -> list[str]:
        """The composites listed for ``split`` (``Sub/composite_images/<file>``)."""
        return list(self._list(split))

    def leave_out(self, split: str, names: set[str]) -> None:
        """Read ``split`` without ``names`` from now on (``train.overlap``)."""
        self._lists[split] = [n for n in self._list(split) if n not in names]

    def units(
        self, split: str, recipes: tuple[str, ...] = (), fg_ratio: tuple[float, float] = (0.0, 1.0)
    ) -> list[Unit]:
        if tuple(fg_ratio) != (0.0, 1.0):
            raise DataError(
                f"{self.root}: data.fg_ratio selects by our shards' fg_ratio column; "
                "iHarmony4 lists have none (leave it at [0, 1])"
            )
        names = self._list(split)
        part = ("train", "test").index(split)
        keep = [i for i, n in enumerate(names) if not recipes or self.sub_of(n) in recipes]
        return [
            Unit(part, k, tuple(keep[k * IHARMONY4_UNIT_ROWS : (k + 1) * IHARMONY4_UNIT_ROWS]))
            for k in range((len(keep) + IHARMONY4_UNIT_ROWS - 1) // IHARMONY4_UNIT_ROWS)
        ]

    def text_dim(self, units: list[Unit]) -> int | None:
        return None

    @staticmethod
    def sub_of(name: str) -> str:
        """The sub-dataset of a listed composite: its folder, or in HT's merged layout
        the letter iHarmony4's file names start with."""
        folder = name.split("/", 1)[0]
        if folder != "composite_images":
            return folder
        return {"a": "HAdobe5k", "c": "HCOCO", "f": "HFlickr", "d": "Hday2night"}.get(
            Path(name).name[:1], "composite_images")

    @staticmethod
    def paths_for(name: str) -> tuple[str, str, str]:
        """``Sub/composite_images/c1_2_3.jpg`` -> (composite, mask ``c1_2.png``, real ``c1.jpg``)."""
        folder = str(Path(name).parent.parent)
        prefix = "" if folder == "." else f"{folder}/"
        stem = Path(name).stem
        mask = stem.rsplit("_", 1)[0]
        real = mask.rsplit("_", 1)[0]
        return name, f"{prefix}masks/{mask}.png", f"{prefix}real_images/{real}.jpg"

    def read(self, unit: Unit, text_keys: tuple[str, ...], phrase: bool = False) -> list[dict[str, Any]]:
        names = self._list(("train", "test")[unit.part])
        out = []
        for i in unit.rows:
            comp, mask, real = self.paths_for(names[i])
            row: dict[str, Any] = {"sample_id": comp, "recipe": self.sub_of(comp)}
            for key, rel in (("composite", comp), ("mask", mask), ("target", real)):
                try:
                    row[key] = (self.root / rel).read_bytes()
                except OSError as exc:
                    row[key] = None
                    row.setdefault("error", f"{rel}: {exc.strerror or exc}")
            out.append(row)
        return out


def is_iharmony4(root: Path) -> bool:
    """A folder in iHarmony4's layout (and not one of our builds)."""
    if (root / MANIFEST_NAME).exists():
        return False

    def has_lists(d: Path) -> bool:
        return d.is_dir() and any((d / f"{d.name}_{s}.txt").is_file() for s in ("train", "test"))

    return ((root / "IHD_train.txt").exists()
            or (root / "IHD_test.txt").exists()
            or any((root / s).is_dir() for s in IHARMONY4_SUBSETS)
            or (root.is_dir() and any(has_lists(d) for d in root.iterdir())))


def open_source(root: Path) -> ShardSource | IHarmony4Source:
    root = Path(root)
    if (root / MANIFEST_NAME).exists():
        return ShardSource(root)
    if is_iharmony4(root):
        return IHarmony4Source(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    return ShardSource(root)  # raises: no manifest, the dataset is not complete
