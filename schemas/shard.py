"""Arrow schema of one shard row (one training triple), version 6.

Column groups follow DESIGN.md. v2: ``caption_candidates`` became (text, CLIP score)
structs, best first, and the caption and embedding columns are filled by the captions
stage (null when it is off). v3: ``realism``, the realism judge's features of the row
(``tasks/synthesize/realism.py``), so a built dataset can be re-filtered with other thresholds.
v4: ``realism.outline_contrast``. v5: the mask composited with is the polygon fitted to
the photo's edges where the fit agrees with it (``mask_source``); the annotation's own
polygon mask stays in ``polygon_mask`` (segmentation metrics against VGPhraseCut).
v6: ``realism.neutral_chroma`` (the region's white and grey parts painted).
The CLIP model id and embedding width are in each file's
metadata (``phraseharmony.clip_model``, ``phraseharmony.clip_dim``).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "6"

_relation = pa.list_(pa.list_(pa.string()))
_embedding = pa.list_(pa.float16())
_candidate = pa.struct([("text", pa.string()), ("clip_score", pa.float32())])
# The realism judge's features (tasks/synthesize/realism.py computes them, RealismConfig thresholds
# them), all on the composite vs the target inside the mask unless said otherwise.
REALISM_FIELDS: list[tuple[str, str]] = [
    ("delta_e", "mean CIEDE2000 (as the delta_e column)"),
    ("fmse", "fMSE (as the fmse column)"),
    ("visibility", "ΔE76 between the region's mean colours x fg_ratio^0.25"),
    ("fg_ratio", "the mask's share of the frame (as the fg_ratio column: the visibility floor "
                 "is higher for small regions)"),
    ("fg_chroma", "the target region's mean CIELAB chroma"),
    ("fg_chroma_ratio", "composite region's mean chroma / target's (floor 2)"),
    ("neutral_chroma", "the composite's mean chroma over the region pixels near-neutral in the "
                       "target (chroma < 8, L* > 15; 0 when under 1% of the region)"),
    ("fg_spread", "sqrt(var a* + var b*) of the composite region"),
    ("spread_ratio", "that spread / the target region's (floor 2)"),
    ("bg_spread", "sqrt(var a* + var b*) of the composite's background (-1: no background)"),
    ("hue_shift", "degrees between the region's mean a*b* before and after (0 unless both "
                  "have chroma >= 8)"),
    ("speckle_ratio", "a*b* |Laplacian| energy inside the region, composite / target"),
    ("halo", "ΔE76 between the mean change of the mask's 2-px edge band and of its interior"),
    ("texture_ratio", "luma gradient energy inside the region, composite / target"),
    ("new_clip", "share of region pixels newly blown to white or crushed to black"),
    ("outline_contrast", "the photo's ΔE76 across the mask's outline (upper quartile), at "
                         "1/4 size in 12-px windows (for lut_pair the photo before look B; "
                         "-1: the outline is only the image border)"),
    ("seam", "share of the outline (1/4 size) where the photo shows no edge (ΔE76 < 6) and the "
             "composite a step at least 8 larger: a seam the change made"),
]
_realism = pa.struct([pa.field(name, pa.float32(), nullable=False, metadata={"doc": doc})
                      for name, doc in REALISM_FIELDS])

FIELDS: list[tuple[str, pa.DataType, bool, str]] = [
    # identity
    ("sample_id", pa.string(), False, "task_id#k: the k-th composite of a phrase task"),
    ("task_id", pa.string(), False, "VGPhraseCut task id"),
    ("image_id", pa.int64(), False, "Visual Genome image id"),
    ("split", pa.string(), False, "VGPhraseCut's own split of the image"),
    # text
    ("phrase", pa.string(), False, "the human referring phrase"),
    ("phrase_name", pa.string(), False, "head noun (phrase_structure.name)"),
    ("phrase_attributes", pa.list_(pa.string()), False, "phrase_structure.attributes"),
    ("phrase_relations", _relation, False, "phrase_structure.relation_descriptions"),
    ("caption", pa.string(), True,
     "the photo's BLIP caption that CLIP scored best (prompt stripped); same for every row of a photo"),
    ("caption_candidates", pa.list_(_candidate), True,
     "every distinct BLIP candidate (k nucleus samples + the beam caption) with its CLIP score "
     "(cosine of the photo's and the text's embeddings), best first"),
    ("caption_clip_score", pa.float32(), True, "the chosen caption's CLIP score"),
    ("caption_model", pa.string(), True,
     "BLIP id@revision; CLIP name@revision; decoding settings; device and precision"),
    # pixels
    ("target", pa.binary(), False, "JPEG: the real (or SSH-graded) image"),
    ("composite", pa.binary(), False, "JPEG: the target with its foreground recoloured"),
    ("mask", pa.binary(), False, "PNG, 1-bit: the foreground region, as composited and measured"),
    ("polygon_mask", pa.binary(), False, "PNG, 1-bit: the annotation's polygon mask (VGPhraseCut's "
     "rasterization rule); equal to mask when mask_source is polygon"),
    ("mask_source", pa.string(), False, "fitted (the polygon fitted to the photo's edges, "
     "tasks/synthesize/mask_fit.py) | polygon (the fit was off or did not agree with the polygon)"),
    ("mask_fit_iou", pa.float32(), False, "IoU of the GrabCut fit with the polygon mask, kept or not "
     "(kept when >= masks.fit_min_iou; 1 when no fit was tried)"),
    ("width", pa.int32(), False, "stored width"),
    ("height", pa.int32(), False, "stored height"),
    ("orig_width", pa.int32(), False, "width of the source photo"),
    ("orig_height", pa.int32(), False, "height of the source photo"),
    # geometry
    ("fg_ratio", pa.float32(), False, "foreground pixels / all pixels at stored size"),
    ("bbox", pa.list_(pa.float32(), 4), False, "foreground box [x, y, width, height] in stored pixels "
     "(COCO xywh: x, y of the top-left foreground pixel)"),
    # provenance
    ("recipe", pa.string(), False, "lut_pair | lut_fg | ..."),
    ("lut_fg", pa.string(), True, "LUT id applied to the foreground"),
    ("lut_bg", pa.string(), True, "LUT id applied to the whole target (lut_pair)"),
    ("strength", pa.float32(), True, "blend toward identity of the LUT(s), 0..1"),
    ("reference_task_id", pa.string(), True, "colour-transfer reference task"),
    ("seed", pa.int64(), False, "per-sample RNG seed, derived from config seed + sample_id"),
    # difficulty (composite vs target, ANCHORS.md definitions, 0-255 scale)
    ("mse", pa.float32(), False, "mean over H*W*3 of squared error"),
    ("fmse", pa.float32(), False, "squared error over foreground / (3*|M|)"),
    ("psnr", pa.float32(), False, "10*log10(255^2/MSE)"),
    ("delta_e", pa.float32(), False, "mean CIEDE2000 over foreground pixels"),
    ("realism", _realism, False, "the realism judge's features of this row (every kept row "
     "passed the build's thresholds; filter again with others)"),
    # embeddings (L2-normalised; model id in file metadata)
    ("clip_image", _embedding, True,
     "CLIP embedding of the source photo (L2-normalised): for re-ranking and filtering only; a "
     "harmonizer must not be conditioned on it, it was computed from the target"),
    ("clip_phrase", _embedding, True, "CLIP text embedding of the phrase (L2-normalised)"),
    ("clip_caption", _embedding, True, "CLIP text embedding of the caption (L2-normalised)"),
]

SHARD_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable, metadata={"doc": doc})
     for name, typ, nullable, doc in FIELDS]
)
COLUMN_NAMES = [f[0] for f in FIELDS]
