"""Same-category references for the colour-transfer recipes (DoveNet's rule).

A reference is a task of *another* image with the same ``phrase_name`` in the same
split (so no test pixels leak into training composites). Candidates come from the whole
annotation table, sorted by (image_id, task_id), so the choice is a pure function of
the annotations and the sample's RNG, whatever the shard or worker.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from tasks.downloader import image_path
from tasks.images import decode_resized
from tasks.masks import polygon_problem, stored_mask
from tasks.shard_plan import UNAVAILABLE


@dataclass(frozen=True)
class Reference:
    task_id: str
    image: np.ndarray   # stored size, RGB uint8
    mask: np.ndarray    # stored size, bool


@lru_cache(maxsize=2)
def reference_pool(annotations_path: Path, mtime_ns: int, images_dir: Path, size: int,
                   masks) -> "ReferencePool":
    """One pool per worker process and annotation file: its index is built from all
    345k tasks, so shard tasks on the same worker share it (``mtime_ns`` in the key:
    a rewritten annotation file gets a new pool)."""
    from tasks.annotations import read_annotation_table

    return ReferencePool(read_annotation_table(annotations_path), images_dir, size, masks)


class ReferencePool:
    def __init__(self, annotations: pa.Table, images_dir, size: int, masks,
                 cache_images: int = 64):
        self.table = annotations
        self.images_dir, self.size, self.masks = images_dir, size, masks
        order = np.lexsort((np.asarray(annotations["task_id"].to_pylist(), dtype=object).astype(str),
                            annotations["image_id"].to_numpy()))
        keys = [f"{s}\x00{n}" for s, n in zip(annotations["split"].to_pylist(),
                                              annotations["phrase_name"].to_pylist())]
        self.groups: dict[str, np.ndarray] = {}
        for row in order:
            self.groups.setdefault(keys[row], []).append(row)
        self.groups = {k: np.asarray(v, np.int64) for k, v in self.groups.items()}
        self.image_ids = annotations["image_id"].to_numpy()
        self._images: OrderedDict[int, tuple[np.ndarray, str]] = OrderedDict()
        self._cache_images = cache_images

    def candidates(self, split: str, name: str, image_id: int) -> tuple[np.ndarray, int, int]:
        """Rows of the group, and the [start, stop) range holding ``image_id``'s own tasks."""
        rows = self.groups.get(f"{split}\x00{name}", np.empty(0, np.int64))
        ids = self.image_ids[rows]
        return rows, int(np.searchsorted(ids, image_id, "left")), int(np.searchsorted(ids, image_id, "right"))

    def pick(self, rng: np.random.Generator, split: str, name: str, image_id: int,
             tried: dict[int, str] | None = None) -> Reference | str:
        """A reference, or the reason there is none. The reference image read goes into
        ``tried`` (id -> sha256 of its bytes, or "unavailable"): the shard's marker keeps
        it, so a later change of that photo rebuilds the shard."""
        rows, start, stop = self.candidates(split, name, image_id)
        n = len(rows) - (stop - start)
        if n <= 0:
            return "no_same_category_reference"
        j = int(rng.integers(n))
        row = int(rows[j if j < start else j + (stop - start)])
        task = {c: self.table[c][row].as_py() for c in
                ("task_id", "image_id", "polygons", "image_width", "image_height")}
        image, token = self._image(task["image_id"])
        if tried is not None:
            tried[task["image_id"]] = token
        if image is None:
            return "reference_image_unavailable"
        w, h = task["image_width"], task["image_height"]
        if polygon_problem(task["polygons"], w, h):
            return "reference_polygon_unusable"
        mask = stored_mask(task["polygons"], w, h, self.size, self.masks)
        if mask.sum() < 16:
            return "reference_mask_too_small"
        return Reference(task["task_id"], image, mask)

    def _image(self, image_id: int) -> tuple[np.ndarray | None, str]:
        """(image at the stored size, sha256 of its file) or (None, "unavailable")."""
        if image_id in self._images:
            self._images.move_to_end(image_id)
            return self._images[image_id]
        try:
            data = image_path(self.images_dir, image_id).read_bytes()
        except OSError:
            return None, UNAVAILABLE
        loaded = decode_resized(data, self.size)
        if loaded is None:  # an unavailable image may arrive later: ask again next time
            return None, UNAVAILABLE
        self._images[image_id] = entry = (loaded[0], hashlib.sha256(data).hexdigest())
        if len(self._images) > self._cache_images:
            self._images.popitem(last=False)
        return entry
