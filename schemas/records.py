"""JSON record formats the pipeline writes besides shards: ledger rows, shard markers and
the manifest. Typed here so that readers (and later stages) know each field."""

from __future__ import annotations

from typing import TypedDict


class LedgerRow(TypedDict, total=False):
    """One line of ``images/_ledger.jsonl`` (the latest line per image_id wins)."""
    image_id: int
    status: str            # ok | missing | corrupt | too_large
    source: str            # where it came from: local | ...
    attempts: int
    time: float            # unix seconds of this attempt
    bytes: int             # size of images/<image_id>.jpg (status ok)
    sha256: str
    actual_width: int
    actual_height: int
    size_mismatch: bool    # decoded size differs from image_data_split.json's
    error: str             # why it is not ok


class SkipCounts(TypedDict):
    counts: dict[str, int]            # reason -> how many
    examples: dict[str, list[str]]    # reason -> a few "file[index]" or task/sample ids


class ShardMarker(TypedDict):
    """``_done/<split>-<index>.json``: written after the shard's rename; what makes it done."""
    shard: str
    path: str              # relative to the output folder
    split: str
    rows: int
    bytes: int
    sha256: str
    config_hash: str
    code_version: str
    inputs_digest: str     # the shard's images and their acquisition outcome
    images: int
    tasks: int
    skips: SkipCounts
    notes: dict[str, int]  # kept-but-noted counts, and `recipe:reason` redraws


class ManifestShard(TypedDict):
    path: str
    split: str
    rows: int
    bytes: int
    sha256: str


class Manifest(TypedDict):
    """``_manifest.json``: written last; its presence means the dataset is complete."""
    name: str
    schema_version: str
    config_hash: str
    code_version: str
    lut_library_version: str
    seed: int
    annotation_files: dict[str, str]            # file name -> sha256
    annotation_skips: SkipCounts
    splits: dict[str, dict[str, int]]           # split -> shards, rows, images, tasks
    totals: dict[str, int]                      # shards, rows, bytes
    skips: SkipCounts
    notes: dict[str, int]
    shards: list[ManifestShard]
