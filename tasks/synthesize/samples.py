"""Per-image work inside a shard: masks, composites, encodes -> shard rows.

Everything here is plain Python/NumPy on one image and its phrase tasks; the shard
module loops over images and writes the rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import cv2
import numpy as np

from schemas.config import RunConfig, SynthesisConfig
from tasks.acquire.annotations import SkipLog
from tasks.captions.join import CaptionJoin
from tasks.core.shard_plan import uses_references
from tasks.synthesize.composite import sample_seed, synthesize
from tasks.synthesize.mask_fit import fit_mask
from tasks.synthesize.masks import degenerate_polygon_count, polygon_problem, stored_mask
from tasks.synthesize.prejudge import probe
from tasks.synthesize.realism import mask_outline
from tasks.synthesize.references import ReferencePool, region_colour


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    # 4:4:4 (no chroma subsampling): the data is about colour, and 4:2:0 would blur a
    # small foreground's colour shift into its surroundings.
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality,
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise RuntimeError("JPEG encode failed")
    return buf.tobytes()


def encode_mask_png(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_BILEVEL, 1])
    if not ok:
        raise RuntimeError("PNG encode failed")
    return buf.tobytes()


def bbox_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def phrase_skip(phrase_name: str, syn: SynthesisConfig) -> str | None:
    """The counted reason a phrase gets no composites for what it names, or None: stuff
    (``skip_head_nouns``) or see-through eyewear (``skip_see_through_nouns``)."""
    name = phrase_name.strip().lower()
    if name in syn.skip_head_nouns:
        return "phrase_names_stuff"
    if name in syn.skip_see_through_nouns:
        return "phrase_names_see_through"
    return None


def task_mask(task: dict[str, Any], cfg: RunConfig, skips: SkipLog, notes: Counter) -> np.ndarray | None:
    """The stored-size polygon mask of a task, or None (counted) when it cannot be used
    (``task_rows`` then fits it to the photo's edges)."""
    syn, w, h = cfg.synthesis, task["image_width"], task["image_height"]
    skipped = phrase_skip(task["phrase_name"], syn)
    if skipped:
        skips.add(skipped, task["task_id"])
        return None
    problem = polygon_problem(task["polygons"], w, h)
    if problem:
        skips.add(problem, task["task_id"])
        return None
    notes["degenerate_polygons"] += degenerate_polygon_count(task["polygons"])
    # Polygons are in the annotated size's coordinates: rasterize there, then resize.
    mask = stored_mask(task["polygons"], w, h, syn.size, cfg.masks)
    ratio = float(mask.mean())
    if ratio < syn.min_fg_ratio or not mask.any():
        skips.add("fg_ratio_below_min", task["task_id"])
        return None
    if ratio > syn.max_fg_ratio:
        skips.add("fg_ratio_above_max", task["task_id"])
        return None
    _x, _y, bw, bh = bbox_of(mask)
    if mask.sum() > syn.max_box_fill * bw * bh:
        skips.add("mask_box_shaped", task["task_id"])
        return None
    return mask


def task_rows(task: dict[str, Any], img: np.ndarray, orig_size: tuple[int, int], cfg: RunConfig,
              luts, refs: ReferencePool, skips: SkipLog, notes: Counter,
              tried: dict[int, str] | None = None, text: CaptionJoin | None = None) -> list[dict[str, Any]]:
    """``composites_per_task`` rows for one phrase task of an already-resized image.
    Reference images read go into ``tried`` (image id -> sha256 or "unavailable");
    ``text`` holds the image's caption columns and the phrase's CLIP embedding."""
    text = text or CaptionJoin()
    syn = cfg.synthesis
    polygon = task_mask(task, cfg, skips, notes)
    if polygon is None:
        return []
    fit = fit_mask(img, polygon, cfg.masks)
    mask = fit.mask
    notes[f"mask_{fit.source}" + (f"_{fit.reason}" if fit.reason and fit.reason != "fit_off" else "")] += 1
    outline = mask_outline(img, mask, fine=fit.source == "fitted")   # once per task
    if 0 <= outline.contrast < syn.realism.min_outline_contrast:
        # Every draw would be judged no_outline: the photo shows no edge where it ends.
        skips.add("mask_no_outline", task["task_id"])
        return []
    if outline.loose > syn.max_loose_outline:
        # A polygon cut through background along much of its length: any visible change
        # draws seams there (the panel a reviewer calls an artifact).
        skips.add("mask_loose_outline", task["task_id"])
        return []
    mask_png, bbox, fg_ratio = encode_mask_png(mask), bbox_of(mask), float(mask.mean())
    polygon_png = mask_png if fit.source == "polygon" else encode_mask_png(polygon)

    source_ab = region_colour(img[mask])[1] if uses_references(cfg) else None
    region = probe(img, mask)

    def pick(rng):
        return refs.pick(rng, task["split"], task["phrase_name"], task["image_id"], tried, source_ab)

    rows, drawn = [], set()
    notes["drawn_phrases"] += 1
    for k in range(syn.composites_per_task):
        sample_id = f"{task['task_id']}#{k}"
        seed = sample_seed(cfg.seed, sample_id)
        result = synthesize(img, mask, syn, np.random.default_rng(seed), luts, pick, notes, outline, region,
                            drawn)
        if isinstance(result, str):
            skips.add(result, sample_id)
            continue
        drawn.add((result.recipe, result.lut_fg, result.lut_bg, result.reference_task_id))
        notes[f"made:{result.recipe}"] += 1
        rows.append({
            "sample_id": sample_id, "task_id": task["task_id"], "image_id": task["image_id"],
            "split": task["split"], "phrase": task["phrase"], "phrase_name": task["phrase_name"],
            "phrase_attributes": task["phrase_attributes"],
            "phrase_relations": task["phrase_relations"],
            **text.image_fields(task["image_id"]),
            "target": encode_jpeg(result.target, syn.jpeg_quality),
            "composite": encode_jpeg(result.composite, syn.jpeg_quality),
            "mask": mask_png, "polygon_mask": polygon_png, "mask_source": fit.source,
            "mask_fit_iou": fit.iou, "width": syn.size, "height": syn.size,
            "orig_width": orig_size[0], "orig_height": orig_size[1],
            "fg_ratio": fg_ratio, "bbox": bbox,
            "recipe": result.recipe, "lut_fg": result.lut_fg, "lut_bg": result.lut_bg,
            "strength": result.strength, "reference_task_id": result.reference_task_id,
            "seed": seed, **result.metrics, "realism": result.realism,
            "clip_phrase": text.phrase(task["task_id"]),
        })
    return rows
