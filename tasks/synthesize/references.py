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

from tasks.acquire.downloader import image_path
from tasks.acquire.images import decode_resized
from tasks.core.linalg3 import norm
from tasks.core.shard_plan import UNAVAILABLE
from tasks.synthesize.masks import polygon_problem, stored_mask
from tasks.synthesize.realism import chroma, extremes, lab

# References drawn per pick; the best of them is used. More finds better references but
# reads more photos (each a JPEG decode unless cached).
CANDIDATES = 3


def region_colour(px: np.ndarray) -> tuple[float, np.ndarray]:
    """(colourfulness and exposure score, mean a*b*) of a region's pixels: the score is
    the mean CIELAB chroma minus 100 x the share of pixels blown to white or crushed to
    black."""
    if len(px) == 0:
        return -np.inf, np.zeros(2)
    px = px[::max(1, len(px) // 2048)]   # a few thousand pixels tell the means
    ab = lab(px.reshape(-1, 1, 3)).reshape(-1, 3)[:, 1:]
    lo, hi = extremes(px)
    clipped = ((lo >= 250) | (hi <= 6)).mean()
    return float(chroma(ab[:, 0], ab[:, 1]).mean() - 100.0 * clipped), ab.mean(axis=0)


def reference_fit(ref: tuple[float, np.ndarray], source_ab: np.ndarray | None) -> float:
    """How good a reference is for a source region: colourful and well exposed, minus how
    far its mean a*b* lies from the source's. Another light moves an object's colours a
    little; a reference of another hue (a blue shirt for a red one) makes the transfer
    paint the object another colour, which the realism judge then turns down."""
    score, ab = ref
    return score if source_ab is None else score - norm(ab - source_ab)


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
    from tasks.acquire.annotations import read_annotation_table

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
        # Loaded references with their score, by table row: a category's references
        # are drawn again and again (mask rasterising and scoring cost ~1 ms each).
        self._loaded: OrderedDict[int, tuple[Reference, tuple[float, np.ndarray], int, str]] = OrderedDict()

    def candidates(self, split: str, name: str, image_id: int) -> tuple[np.ndarray, int, int]:
        """Rows of the group, and the [start, stop) range holding ``image_id``'s own tasks."""
        rows = self.groups.get(f"{split}\x00{name}", np.empty(0, np.int64))
        ids = self.image_ids[rows]
        return rows, int(np.searchsorted(ids, image_id, "left")), int(np.searchsorted(ids, image_id, "right"))

    def pick(self, rng: np.random.Generator, split: str, name: str, image_id: int,
             tried: dict[int, str] | None = None, source_ab: np.ndarray | None = None) -> Reference | str:
        """A reference, or the reason there is none: of up to ``CANDIDATES`` drawn from the
        group, the usable one that fits best (``reference_fit``: colourful, well exposed,
        near the source region's mean a*b* when given; DoveNet's references were picked
        by hand, and a grey, blown or other-hued one gives a greyed, blotchy or
        recoloured composite). Every reference image read goes into ``tried`` (id ->
        sha256 of its bytes, or "unavailable"): the shard's marker keeps it, so a later
        change of that photo rebuilds the shard."""
        rows, start, stop = self.candidates(split, name, image_id)
        n = len(rows) - (stop - start)
        if n <= 0:
            return "no_same_category_reference"
        best, best_score, reason = None, -np.inf, "no_same_category_reference"
        for j in rng.choice(n, size=min(CANDIDATES, n), replace=False):
            got = self._scored(int(rows[j if j < start else j + (stop - start)]), tried)
            if isinstance(got, str):
                reason = got
            elif (fit := reference_fit(got[1], source_ab)) > best_score:
                best, best_score = got[0], fit
        return best if best is not None else reason

    def _scored(self, row: int, tried: dict[int, str] | None
                ) -> tuple[Reference, tuple[float, np.ndarray]] | str:
        if row in self._loaded:
            self._loaded.move_to_end(row)
            ref, score, image_id, token = self._loaded[row]
            if tried is not None:
                tried[image_id] = token
            return ref, score
        got = self._load(row, tried)
        if isinstance(got, str):
            return got
        ref, image_id, token = got
        score = region_colour(ref.image[ref.mask])
        self._loaded[row] = (ref, score, image_id, token)
        if len(self._loaded) > 2 * self._cache_images:
            self._loaded.popitem(last=False)
        return ref, score

    def _load(self, row: int, tried: dict[int, str] | None) -> tuple[Reference, int, str] | str:
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
        return Reference(task["task_id"], image, mask), task["image_id"], token

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
