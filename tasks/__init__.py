"""The pipeline's stages as plain functions (no Prefect), one subpackage per phase, in
the order a row is made:

- ``core``: what every phase shares: atomic files and folder locks, the code version,
  CPU-independent maths, the shard plan with its input digests and done-markers.
- ``acquire``: VGPhraseCut annotations and the photos they name (ingest, resumable
  downloads, the ledger).
- ``captions``: BLIP captions re-ranked by CLIP and CLIP embeddings, per image.
- ``synthesize``: masks, the colour engine (LUTs, colour transfers), the realism judge,
  and the rows of one phrase.
- ``publish``: Parquet shards, the build's state, the manifest, the card, exports.

Imports run down that list only (``tests/test_layout.py`` checks it).
"""

from tasks.core import jit_cache
from tasks.core.moved import keep_old_paths

jit_cache.configure()   # before any compiled kernel is imported

# The flat layout's module names (before the phase folders), for one release.
MOVED = {
    "tasks.files": "tasks.core.files",
    "tasks.lifecycle": "tasks.core.lifecycle",
    "tasks.versioning": "tasks.core.versioning",
    "tasks.torch_compat": "tasks.core.torch_compat",
    "tasks.fixedmath": "tasks.core.fixedmath",
    "tasks.linalg3": "tasks.core.linalg3",
    "tasks.shard_plan": "tasks.core.shard_plan",
    "tasks.annotations": "tasks.acquire.annotations",
    "tasks.json_stream": "tasks.acquire.json_stream",
    "tasks.annotation_fetch": "tasks.acquire.annotation_fetch",
    "tasks.downloader": "tasks.acquire.downloader",
    "tasks.image_sources": "tasks.acquire.image_sources",
    "tasks.http_fetch": "tasks.acquire.http_fetch",
    "tasks.ledger": "tasks.acquire.ledger",
    "tasks.images": "tasks.acquire.images",
    "tasks.sample_photos": "tasks.acquire.sample_photos",
    "tasks.masks": "tasks.synthesize.masks",
    "tasks.mask_fit": "tasks.synthesize.mask_fit",
    "tasks.luts": "tasks.synthesize.luts",
    "tasks.lut_kernels": "tasks.synthesize.lut_kernels",
    "tasks.transfers": "tasks.synthesize.transfers",
    "tasks.references": "tasks.synthesize.references",
    "tasks.composite": "tasks.synthesize.composite",
    "tasks.realism": "tasks.synthesize.realism",
    "tasks.prejudge": "tasks.synthesize.prejudge",
    "tasks.colorimetry": "tasks.synthesize.colorimetry",
    "tasks.metrics": "tasks.synthesize.metrics",
    "tasks.samples": "tasks.synthesize.samples",
    "tasks.shards": "tasks.publish.shards",
    "tasks.build_state": "tasks.publish.build_state",
    "tasks.manifest": "tasks.publish.manifest",
    "tasks.card": "tasks.publish.card",
    "tasks.card_text": "tasks.publish.card_text",
    "tasks.yield_report": "tasks.publish.yield_report",
    "tasks.export_iharmony4": "tasks.publish.export_iharmony4",
}
keep_old_paths(MOVED)
