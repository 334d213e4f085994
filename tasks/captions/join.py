"""What a shard takes from the captions store: per image its caption columns, per phrase
task its CLIP text embedding. Reads Parquet only (no torch), so shard workers stay light."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from tasks.captions.store import CAPTIONS_DIR, PHRASES_DIR, part_path

IMAGE_COLUMNS = ("caption", "caption_candidates", "caption_clip_score", "clip_image", "clip_caption")
EMPTY = {"caption": None, "caption_candidates": None, "caption_clip_score": None,
         "caption_model": None, "clip_image": None, "clip_caption": None}


@dataclass
class CaptionJoin:
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    phrases: dict[str, list[float]] = field(default_factory=dict)
    model: str | None = None       # caption_model of every row
    clip_model: str = ""           # for the shard's file metadata
    clip_dim: str = ""

    def image_fields(self, image_id: int) -> dict[str, Any]:
        row = self.images.get(image_id)
        return EMPTY if row is None else {**row, "caption_model": self.model}

    def phrase(self, task_id: str) -> list[float] | None:
        return self.phrases.get(task_id)


def load_join(out_dir, split: str, index: int) -> CaptionJoin:
    """The caption and phrase parts of one shard (the flow made them current first)."""
    caps = pq.read_table(part_path(out_dir, CAPTIONS_DIR, split, index),
                         columns=["image_id", *IMAGE_COLUMNS])
    phrases = pq.read_table(part_path(out_dir, PHRASES_DIR, split, index))
    meta = {k.decode(): v.decode() for k, v in (caps.schema.metadata or {}).items()}
    model = (f"BLIP {meta.get('phraseharmony.blip_model')}; CLIP {meta.get('phraseharmony.clip_model')}; "
             f"{meta.get('phraseharmony.decoding')}; {meta.get('phraseharmony.device')}")
    images = {r.pop("image_id"): r for r in caps.to_pylist()}
    return CaptionJoin(images, {r["task_id"]: r["clip_phrase"] for r in phrases.to_pylist()}, model,
                       meta.get("phraseharmony.clip_model", ""), meta.get("phraseharmony.clip_dim", ""))
