"""JSON record formats the pipeline writes besides shards: ledger rows, shard markers and
the manifest. Typed here so that readers (and later stages) know each field."""

from __future__ import annotations

from typing import TypedDict

# A ledger row's statuses. Settled ones are final until the inputs change; "retry" is not.
OK = "ok"
RETRY = "retry"                  # transient failure, tried again next run
FAILED = "failed"                # permanent (404, 410, not an image, ...) or gave up
MISSING = "missing"              # local/zip source has no such file
CORRUPT = "corrupt"              # bytes do not decode to a whole image
TOO_LARGE = "too_large"          # pixels or bytes over the configured limit
INVALID = "invalid"              # the record itself is bad (no url, bad id, ...)
SETTLED = frozenset({OK, FAILED, MISSING, CORRUPT, TOO_LARGE, INVALID})
STATUSES = SETTLED | {RETRY}


class LedgerRow(TypedDict, total=False):
    """One line of ``images/_ledger.jsonl`` (the latest line per image_id wins).
    Statuses and what "settled" means: above."""
    image_id: int
    record: str            # instead of image_id: "file[index]" of a record without a usable id
    status: str            # ok | retry | failed | missing | corrupt | too_large | invalid
    source: str            # where it came from: local | zip | http
    source_fingerprint: str  # local/zip: the source copy's size+mtime or CRC (a change
                             # makes the next run acquire the photo again)
    url: str
    http_status: int       # of the last attempt's final response
    attempts: int          # in all, across runs (reset by a success or --retry-failed)
    time: float            # unix seconds of this attempt
    bytes: int             # size of images/<image_id>.jpg (status ok)
    sha256: str
    resumed_from: int      # bytes already there when the successful attempt started
    actual_width: int
    actual_height: int
    size_mismatch: bool    # decoded size differs from image_data_split.json's
    exif_orientation: int  # the file's EXIF orientation tag when not 1 (never applied:
                           # the polygons are in stored-pixel coordinates)
    error: str             # why it is not ok
    note: str              # e.g. a file verified after an interrupted run


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
    inputs_digest: str     # everything the shard is made from (tasks/core/shard_plan.py)
    references: list       # [image_id, sha256 | "unavailable"] of each reference photo read
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
    config: dict                                # the output-relevant config (no paths)
    luts_left_out: list[str]                    # user .cube files not used, "file[:line]: why"
    splits: dict[str, dict[str, int]]           # split -> shards, rows, images, tasks
    totals: dict[str, int]                      # shards, rows, bytes
    skips: SkipCounts
    notes: dict[str, int]
    shards: list[ManifestShard]
    source_ids: dict[str, dict[str, list[int]]]  # split -> coco_id / flickr_id -> sorted ids
