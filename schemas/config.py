"""The one typed run config. Every tunable lives here, with the reason for its default.

Loaded from YAML (``configs/*.yaml``), then overridden by ``key.sub=value`` strings from
the CLI or deployment parameters. ``config_hash()`` covers everything that changes
output bytes, so it goes into every shard and the manifest.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.errors import UserError

ModelT = TypeVar("ModelT", bound=BaseModel)
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ANNOTATIONS = REPO_ROOT / "sample_data" / "VGPhraseCut_v0"
SPLITS = ("train", "val", "test", "miniv")
LUT_RECIPES = ("lut_pair", "lut_fg")
TRANSFER_RECIPES = ("reinhard", "xiao_rgb", "hist_ycbcr", "idt")


class _Strict(BaseModel):
    # Unknown keys are typos: refuse them instead of silently ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteFile(_Strict):
    # A Google Drive file id (fetched with gdown, like the official script) or a URL.
    gdrive_id: str | None = None
    url: str | None = None
    # Expected sha256 of the file; a mismatch is an error. Recorded in the manifest.
    sha256: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "RemoteFile":
        if (self.gdrive_id is None) == (self.url is None):
            raise ValueError("give exactly one of gdrive_id or url")
        return self


class AnnotationLimits(_Strict):
    # Bounds on one annotation record: past them the record is a counted skip, so no
    # single record can crash the build or exhaust memory. Real VGPhraseCut records sit
    # far inside every one.
    # A task's deepest value (a point's coordinate) is 5 levels in; the JSON reader's
    # memory grows with the square of the depth (30,000 levels took 2.2 GB).
    max_depth: int = Field(8, ge=5, le=64)
    # Real phrases are under ~100 characters; a 1 MB one broke the card and previews.
    max_phrase_chars: int = Field(500, ge=16)
    # Instances of one task, and polygon points of one task in all (rasterisation time).
    max_instances: int = Field(1000, ge=1)
    max_points: int = Field(100_000, ge=3)


class AnnotationsConfig(_Strict):
    # Folder holding image_data_split.json and refer_<split>.json (official layout).
    dir: Path = SAMPLE_ANNOTATIONS
    # VGPhraseCut's own splits to build; miniv overlaps val, so it is off by default.
    splits: tuple[str, ...] = ("train", "val", "test")
    # Where to fetch a file that is not in `dir` yet: file name -> source.
    # configs/vgphrasecut.yaml lists the official Google Drive ids.
    sources: dict[str, RemoteFile] = {}
    # Google Drive's download address for an id; a setting so mirrors (and tests) work.
    gdrive_url: str = "https://drive.google.com/uc?id={id}"
    limits: AnnotationLimits = AnnotationLimits()

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in v if s not in SPLITS]
        if bad:
            raise ValueError(f"unknown split(s) {bad}; choose from {SPLITS}")
        return v


class HttpConfig(_Strict):
    # Requests per second to one host: VG's images all live on one university server,
    # and img2dataset-style floods get throttled (429) or banned.
    per_host_rate: float = Field(20.0, gt=0)
    # Seconds to connect, and between bytes once connected (a stalled server).
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    # VG photos are < 1 MB; anything this big is not one of them.
    max_bytes: int = Field(30 * 2**20, ge=1024)
    max_redirects: int = Field(5, ge=0)
    # Honour Retry-After on 429/503 up to this many seconds (a server asking for a day
    # is better retried by the next scheduled run).
    max_retry_after: float = Field(600.0, ge=0)
    user_agent: str = "phraseharmony-downloader/0.1 (research dataset builder)"


class ImagesConfig(_Strict):
    # "sample": photos shipped inside installed packages (the bundled demo);
    # "local": a folder of <image_id>.jpg files (flat, or VG_100K/ and VG_100K_2/);
    # "zip": Visual Genome's images.zip / images2.zip, read member by member;
    # "http": each record's url (what the official script does, made resumable).
    source: Literal["sample", "local", "zip", "http"] = "sample"
    dir: Path | None = None
    zips: tuple[Path, ...] = ()
    # Refuse images above this many pixels before decoding them (decompression bombs),
    # and image records claiming more (masks are rasterised at the claimed size).
    max_pixels: int = Field(40_000_000, ge=1, le=2**31 - 1)
    # Concurrent downloads (threads, one keep-alive connection each). I/O-bound: 2 cores
    # drive 32 connections; the per-host rate limit is what keeps servers happy.
    workers: int = Field(32, ge=1, le=512)
    # HTTP only: split those connections over this many processes. One process is
    # GIL-bound (~430 verified images/s on 2 cores here); more use more cores.
    processes: int = Field(1, ge=1, le=64)
    # Transient failures (timeouts, resets, 5xx, 429): tries within one run, with
    # exponential backoff and full jitter between them ...
    attempts_per_run: int = Field(3, ge=1)
    backoff_base: float = Field(1.0, ge=0)
    backoff_max: float = Field(60.0, ge=0)
    # ... and in all, across scheduled runs, before the image counts as failed for good.
    give_up_after: int = Field(12, ge=1)
    # Ask again for images a server refused for good (404, 410, ...). Off: they settle.
    retry_failed: bool = False
    http: HttpConfig = HttpConfig()

    @model_validator(mode="after")
    def _where(self) -> "ImagesConfig":
        if self.source == "local" and self.dir is None:
            raise ValueError("images.dir is required when images.source is 'local'")
        if self.source == "zip" and not self.zips:
            raise ValueError("images.zips (images.zip, images2.zip) is required when images.source is 'zip'")
        return self


class MaskConfig(_Strict):
    # "official": VGPhraseCut's PIL rule (outline included) so masks match the benchmark;
    # "coco": pycocotools' unbiased rasterization (no half-pixel growth at edges).
    rule: Literal["official", "coco"] = "official"
    # A mask pixel at output size is foreground when >= this fraction of its area was.
    binarize_threshold: float = Field(0.5, gt=0.0, le=1.0)
    # Fit the polygon mask to the photo's edges before compositing (tasks/synthesize/mask_fit.py,
    # GrabCut): a loose polygon recoloured paints a panel with a seam through the
    # background. The row keeps the polygon's own mask too (polygon_mask).
    fit: bool = True
    # The ring outside the polygon GrabCut may take as background, at the stored size
    # (256²: VGPhraseCut's polygons stray ~1-6 px, a wheel's takes in more floor).
    fit_ring_px: int = Field(6, ge=1, le=64)
    # Pixels deeper inside the polygon than this share of its largest inner distance are
    # sure foreground: without a core, GrabCut dropped 6 of the sample's 27 objects
    # (dark seat, wheel, headlight, glasses: colours like their surroundings).
    fit_core: float = Field(0.3, gt=0.0, le=1.0)
    # GrabCut's iterations: 3 gave the same masks as 2 on the sample, at 1.4x the time.
    fit_iterations: int = Field(2, ge=1, le=10)
    # The fit is kept when its IoU with the polygon is at least this, and the two
    # outlines are on average at most fit_max_boundary_px apart (256²): a fit that drops
    # much of what the phrase names is not the annotated region anymore. On the sample
    # the fits judged right by eye run down to IoU 0.698 (a wheel's ellipse with its
    # floor: as a polygon it was recoloured as a panel, 3 artifacts in the review) and
    # out to 12.9 px (the cat's polygon with a strip of blurred background); the one
    # judged wrong (a spoon losing its handle) is at 0.62. docs/realism.md.
    fit_min_iou: float = Field(0.65, ge=0.0, le=1.0)
    fit_max_boundary_px: float = Field(16.0, gt=0.0)
    # Polygons under this many pixels are not fitted (GrabCut needs colours to model).
    fit_min_pixels: int = Field(64, ge=1)


class RealismConfig(_Strict):
    # The realism judge's thresholds (tasks/synthesize/realism.py; measured on the labelled set in
    # tests/fixtures/realism, see docs/realism.md). Every feature is stored per row, so
    # other thresholds can be applied to a built dataset without rebuilding it.
    # Visibility floor: under mean ΔE2000 6 or fMSE 100 on the foreground a reviewer
    # sees no mismatch at 1x (a just-noticeable difference is ~2.3; iHarmony4's test
    # composites average fMSE 1387).
    min_delta_e: float = Field(6.0, ge=0.0)
    min_fmse: float = Field(100.0, ge=0.0)
    # ... and under 5 for the region's mean-colour shift (ΔE76) x fg_ratio^0.25: a small
    # object needs a larger shift to be seen. On the rows judged by eye it takes the
    # near no-ops flagged from 40% to 71%, for 27% of plausible rows redrawn instead of
    # 22% (docs/realism.md).
    min_visibility: float = Field(5.0, ge=0.0)
    # ... and under min_visibility_small for regions under small_region of the frame: on
    # a reviewer's sheets (the review's protocol, docs/realism.md) spoons, patches, caps
    # and rockets changed by visibility 5-8 read as no change at 1x.
    small_region: float = Field(0.07, ge=0.0, le=1.0)
    min_visibility_small: float = Field(8.0, ge=0.0)
    # Mean CIELAB chroma at which a region reads as coloured rather than near-grey.
    chromatic: float = Field(12.0, ge=0.0)
    # A coloured foreground keeping under this share of its chroma reads as greyed out
    # (a monochrome or zero-saturation look on one object of a colour photo). Higher
    # values also take silver and white objects whose colour came from the light.
    min_chroma_ratio: float = Field(0.25, ge=0.0)
    # ... and a strongly coloured one (mean chroma >= saturated_chroma: skin, a red suit)
    # keeping under min_saturated_chroma_ratio was pushed grey or brick: on a reviewer's
    # sheets such regions kept 31-44% of their chroma, and skin pushed grey or olive kept
    # 56-58% in the review of docs/realism.md (a plausible row there kept 57%: the price).
    saturated_chroma: float = Field(30.0, ge=0.0)
    min_saturated_chroma_ratio: float = Field(0.6, ge=0.0)
    # A near-grey foreground given this much mean chroma was painted, not re-lit.
    colourised_chroma: float = Field(20.0, ge=0.0)
    # A coloured foreground (mean chroma >= boosted_chroma) given more than
    # max_chroma_boost times its chroma was painted too: in blind reviews of the six-recipe
    # build (docs/realism.md, rounds 2-3) skin seen through glasses and a nose turned
    # orange (chroma 30-45, boosted 1.5-2.9x) were 11 of 18 absurd rows, 8 over this;
    # white and pale objects tinted by a warm look (a shuttle, a rocket) gain 2-2.5x too,
    # from under 30. 1 of 50 plausible review rows and 3 of 49 of the labelled set are over it.
    boosted_chroma: float = Field(30.0, ge=0.0)
    max_chroma_boost: float = Field(1.6, gt=1.0)
    # ... and a pale one (chromatic <= chroma < boosted_chroma) given more than
    # max_pale_chroma_boost times: a warm light on a white object raises a low chroma by
    # a larger factor, but over 2x a white rocket, a spoon or a shuttle read as painted
    # gold. Over the rows two blind raters agreed on (rounds 4-6 and 9, 254 rows) this
    # takes 11 absurd and 5 artifact rows the judge kept, and 4 of 139 plausible ones
    # (a pagoda warmed 2.4-2.6x, green eyes); at 1.8, 9 plausible for 6 more others.
    max_pale_chroma_boost: float = Field(2.0, gt=1.0)
    # The region's near-neutral pixels (white, grey, metal: chroma < 8 in the target)
    # given more than this mean chroma were painted: a white cup or cap crown turned
    # orange, a silver spoon gold, a flag's white stripes yellow (42-50 in review rounds
    # 4-5, where two blind raters agreed), while every row they both called plausible
    # stayed under 40 (warm casts on skin and a white cup reach 39). Catches what
    # fg_colourised (the region's mean) cannot: the white parts of a region that is
    # coloured elsewhere.
    max_neutral_chroma: float = Field(40.0, gt=0.0)
    # A scene whose colours spread less than this (sqrt(var a* + var b*)) is monochrome
    # or one-tint; a foreground spreading more than mono_fg_spread in it is a colour
    # splash, not a mismatch.
    mono_bg_spread: float = Field(4.0, ge=0.0)
    mono_fg_spread: float = Field(8.0, ge=0.0)
    # Degrees between the foreground's mean a*b* before and after (both chromatic):
    # light changes turn hues a little; beyond this the object changed colour.
    max_hue_shift: float = Field(60.0, ge=0.0, le=180.0)
    # a*b* high-frequency energy (|Laplacian|) over the target's: speckle, posterisation.
    max_speckle_ratio: float = Field(2.5, gt=0.0)
    # ΔE76 between the mean change of the mask's edge band and of its interior: fringes
    # and halos where a loose polygon took in background.
    max_halo: float = Field(15.0, gt=0.0)
    # Luma gradient energy over the target's, inside the mask: texture destroyed or
    # amplified beyond what a tone change does.
    min_texture_ratio: float = Field(0.5, ge=0.0)
    max_texture_ratio: float = Field(2.0, gt=0.0)
    # Share of foreground pixels newly blown to white or crushed to black.
    max_new_clip: float = Field(0.15, ge=0.0, le=1.0)
    # The photo's colour step across the mask's outline (upper quartile of ΔE76 over
    # the outline, at 1/4 size in 12-px windows): under this the photo shows no edge
    # where the mask ends (a sky rectangle, a strip along the image border, a tower's
    # polygon filled with sky), and a reviewer sees a painted shape, not an object. The
    # build skips such tasks before drawing (mask_no_outline). On the rows judged by
    # eye every value under 6.5 is a no-op or absurd row, the first other is at 7.9 and
    # the first plausible one at 11; the bundled sample's objects start at 10.9.
    min_outline_contrast: float = Field(7.0, ge=0.0)
    # Share of the outline along which the photo shows no edge and the composite shows
    # one (a seam: a loose polygon's panel cut through the background). Chosen on the
    # labelled rows and synthetic panels: docs/realism.md.
    max_seam: float = Field(0.25, ge=0.0, le=1.0)


class SynthesisConfig(_Strict):
    # Output side in pixels; harmonization papers train and evaluate at 256x256.
    size: int = Field(256, ge=32, le=2048)
    # Resize rule: "stretch" to size x size, as iHarmony4's 256x256 evaluation does.
    # (Padding is deliberately not offered: a border would leak into the metrics.)
    resize: Literal["stretch"] = "stretch"
    # Two composites per phrase gives the ~622k training triples of the plan.
    composites_per_task: int = Field(2, ge=1, le=64)
    # Recipe mixture (weights are normalised). LUT recipes grade the photo itself; the
    # four DoveNet transfers borrow a same-category object's colours. IDT (with regrain)
    # costs ~50x a LUT sample, so it gets a small share by default.
    recipes: dict[str, float] = {"lut_pair": 0.35, "lut_fg": 0.25, "reinhard": 0.12,
                                 "xiao_rgb": 0.12, "hist_ycbcr": 0.12, "idt": 0.04}
    # Blend of each change toward identity, drawn uniformly; 1.0 is the full change.
    # 0.9-1: with 0.75-1 the lut_fg rows averaged 0.50x iHarmony4's fMSE and lost 55% of
    # their draws to the visibility floor (bench/stages.py input, docs/realism.md).
    strength_min: float = Field(0.9, ge=0.0, le=1.0)
    strength_max: float = Field(1.0, ge=0.0, le=1.0)
    # lut_pair's drawn strength is scaled by this: its composite differs from its target
    # by two looks (A in the region against B around it), about twice one look's change
    # (1.59-1.66x iHarmony4's fMSE at full strength, against 0.8x for the others), and
    # in the blind reviews its absurd and broken rows had twice the fMSE of its plausible
    # ones (median 2,700-2,800 against 1,387; docs/realism.md). configs/vgphrasecut.yaml
    # takes 0.75; the default keeps 1.0, where the bundled sample's 27 phrases make 29
    # rows (at 0.75, 23: its val split falls to 2 rows, too few for the demo's training
    # and evaluation).
    pair_strength_scale: float = Field(1.0, gt=0.0, le=1.0)
    # Phrases whose head noun (phrase_structure.name, lower-cased) is "stuff" are skipped:
    # harmonization data is about objects pasted into scenes (iHarmony4 uses COCO
    # instances), and a recoloured sky, lawn or wall is a regrading of the scene, with
    # no object boundary to harmonize. The default is COCO-Stuff's most frequent classes
    # as Visual Genome names them.
    skip_head_nouns: tuple[str, ...] = (
        "sky", "cloud", "clouds", "water", "ocean", "sea", "lake", "river", "waves", "grass",
        "field", "ground", "dirt", "sand", "snow", "road", "street", "sidewalk", "pavement",
        "floor", "wall", "ceiling", "tree", "trees", "bush", "bushes", "leaves", "foliage",
        "hill", "hills", "mountain", "mountains", "background", "shadow", "shadows", "fog")
    # Phrases naming see-through eyewear are skipped too: a pair of glasses' region is
    # mostly the face behind the lenses, so any change paints the cheeks and eyes. Of
    # the 18 "glasses" rows of review rounds 4-10 (docs/realism.md), two blind raters
    # called none plausible: 10 artifacts, 1 absurd, 7 split.
    skip_see_through_nouns: tuple[str, ...] = ("glasses", "eyeglasses", "spectacles")
    # A mask filling more than this share of its bounding box is a box drawn around a
    # region, not an object's outline (VGPhraseCut has such boxes, mostly for stuff).
    max_box_fill: float = Field(0.95, gt=0.0, le=1.0)
    # A mask whose outline runs where the photo shows no edge (ΔE76 step under 6, 3x3
    # windows, at 1/4 size or at the stored size, the larger share) for more than this
    # share of its length cuts through background or a surface: every visible change
    # draws seams there. Two blind raters agreeing on 86% of review round 4's rows
    # (docs/realism.md) called every such row an artifact: the launch tower's strip
    # (0.44-0.67 at 1/4), the tabby cat's polygon with a strip of background (0.21-0.30),
    # glasses with the skin around them (0.21); the plausible rows' largest share was
    # 0.15 (the red motorcycle). At the stored size (stop 30; fitted masks only: a hand
    # polygon runs beside the edges there): a flag's fit over a suit's shoulder
    # 0.24-0.34, a seat's and glasses' 0.15-0.24. Over the rows two raters agreed on in
    # rounds 4-9, 1/4 size alone takes 16 of 83 artifacts and nothing else; both sizes
    # 32 of 83 artifacts, 3 of 57 absurd, 4 of 190 plausible (the flag's).
    max_loose_outline: float = Field(0.2, ge=0.0, le=1.0)
    # Foreground-ratio bounds: tiny regions teach nothing, huge ones are global grading.
    min_fg_ratio: float = Field(0.005, ge=0.0, le=1.0)
    max_fg_ratio: float = Field(0.9, ge=0.0, le=1.0)
    # Quality filter: the realism judge (its visibility floor included), then a ceiling
    # on the foreground change (composite vs target, 0-255 scale): past ΔE 45 / fMSE 9000
    # it is no longer a plausible mismatch (iHarmony4's input composites average 1387).
    realism: RealismConfig = RealismConfig()
    max_fmse: float = Field(9000.0, gt=0.0)
    max_delta_e: float = Field(45.0, gt=0.0)
    # Draw another LUT choice / reference / strength up to this many times (the realism
    # judge turns down 30-75% of draws, by recipe; with 4, 10% of phrases got no row).
    max_attempts: int = Field(6, ge=1)
    # Judge a LUT draw on a subsample of the region before rendering it (tasks/synthesize/prejudge.py):
    # a turned-down draw then costs a fraction of a sample. Off: every draw is rendered.
    prejudge: bool = True
    # hist_ycbcr is not drawn for regions under this share of the frame: its per-channel
    # histogram match fringes small regions (a green crescent on an amber headlight).
    # 0.03 (was 0.02): in the two-rater reviews its rows at 2-3% were 3 artifacts (green
    # fringes on a rocket's nose and a small flower) and 1 absurd, none plausible.
    hist_min_fg_ratio: float = Field(0.03, ge=0.0, le=1.0)
    jpeg_quality: int = Field(95, ge=50, le=100)

    @field_validator("recipes")
    @classmethod
    def _known_recipes(cls, v: dict[str, float]) -> dict[str, float]:
        known = set(LUT_RECIPES) | set(TRANSFER_RECIPES)
        bad = sorted(set(v) - known)
        if bad:
            raise ValueError(f"unknown recipe(s) {bad}; choose from {sorted(known)}")
        if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("recipe weights must be >= 0 with a positive sum")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> "SynthesisConfig":
        if self.strength_min > self.strength_max:
            raise ValueError("strength_min must be <= strength_max")
        if self.min_fg_ratio >= self.max_fg_ratio:
            raise ValueError("min_fg_ratio must be < max_fg_ratio")
        if self.realism.min_fmse >= self.max_fmse or self.realism.min_delta_e >= self.max_delta_e:
            raise ValueError("quality floor must be below the ceiling (fmse, delta_e)")
        return self


class LutsConfig(_Strict):
    # Lattice size of the built-in looks: 33 is the industry default (17 visibly bands
    # on smooth gradients, 65 costs 8x the memory for no visible gain at 8 bits).
    size: int = Field(33, ge=2, le=65)
    # Folders of users' .cube files that join the library (ids "user:<folder>/<name>").
    user_dirs: tuple[Path, ...] = ()
    # Log-to-Rec.709 and similar conversions are not looks: keep them out by default.
    exclude_technical: bool = True
    # `luts check` flags LUTs whose chart colours sit within this mean ΔE2000 of another.
    near_duplicate_delta_e: float = Field(1.0, ge=0.0)
    # Looks this subtle (mean ΔE2000 vs identity on the ColorChecker chart) stay out of
    # composites: on real regions they mostly land under the realism judge's visibility
    # floor (ΔE 6) and cost a redraw (44 of the 104 built-ins are under 6).
    composite_min_delta_e: float = Field(6.0, ge=0.0)
    # Non-photographic looks (monochrome, zero saturation, channel swaps: measured on the
    # chart, lut_library.library.non_photographic) stay out of composites, as look A and
    # as look B: one greyed object in a colour photo, or a colour object in a monochrome
    # one, is not a mismatch a camera or a light makes (the manifest marks the 8 built-ins).
    composite_photographic_only: bool = True
    # What a build takes from these settings (the look pool, its version, the user files
    # left out): lut_library.pool_for / version_for / left_out_for.


class CaptionsConfig(_Strict):
    # true: every image gets BLIP captions and CLIP embeddings (the weights must be
    # present, else the run stops before any work); false: those columns stay null;
    # "auto": on when the weights are present, else off (and the run and card say so).
    enabled: bool | Literal["auto"] = "auto"
    # A Hugging Face id (from the local cache; "@rev" pins a revision) or a folder
    # written by save_pretrained (model + processor). BLIP-large: the captioner LAION-COCO
    # used; "Salesforce/blip-image-captioning-base" is the light option.
    blip_model: str = "Salesforce/blip-image-captioning-large"
    # open_clip NAME/TAG, hf-hub:ORG/REPO or local-dir:DIR. ViT-L-14 DataComp-XL: among
    # the best L/14 re-rankers in open_clip's table (COCO retrieval .545 vs OpenAI's
    # ~.46), plain GELU (no QuickGELU mismatch to get wrong), 768-d; trained on public
    # data. "ViT-B-32/laion2b_s34b_b79k" (512-d) is the light option.
    clip_model: str = "ViT-L-14/datacomp_xl_s13b_b90k"
    # k candidates per image by nucleus sampling (BLIP's CapFilt recipe), plus one beam
    # search caption; CLIP picks the best. LAION-COCO sampled 40; 8 keeps the GPU cost low.
    candidates: int = Field(8, ge=1, le=64)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    num_beams: int = Field(3, ge=1, le=16)
    # BLIP's recommended lengths (tokens, prompt included) and prompt (stripped from the
    # output: it is not part of the caption).
    min_length: int = Field(5, ge=0, le=64)
    max_length: int = Field(20, ge=4, le=128)
    prompt: str = "a picture of "
    # "fused": samples and beam search in one pass over a cache of the image's
    # cross-attention computed once per image (tasks/captions/decoder.py: same tokens as
    # generate, several times faster), vision attention fused (vision.py); "generate":
    # transformers' vision model and generate, the reference.
    decoder: Literal["fused", "generate"] = "fused"
    # "auto": CUDA when present, else CPU. bf16 on the GPU (fp16 with precision=float16),
    # fp32 on the CPU, whatever precision says there.
    device: str = "auto"
    precision: Literal["bfloat16", "float16"] = "bfloat16"
    # Images through the models at a time (halved and retried on CUDA out-of-memory,
    # logged; 512 and more keep an H200 busy), and worker processes that decode and
    # preprocess ahead of the models and tokenise candidates for CLIP.
    batch_size: int = Field(32, ge=1, le=4096)
    workers: int = Field(2, ge=0, le=64)

    @model_validator(mode="after")
    def _lengths(self) -> "CaptionsConfig":
        if self.min_length >= self.max_length:
            raise ValueError("min_length must be < max_length")
        return self


class ShardsConfig(_Strict):
    # ~1,000 images -> ~9,000 rows per shard keeps Prefect at a few hundred task runs.
    images_per_shard: int = Field(1000, ge=1)
    # Flush a row group at this many bytes of encoded pixels: bounds writer memory and
    # keeps row groups under ~100 MB for readers that load one group at a time.
    row_group_bytes: int = Field(64 * 2**20, ge=2**16, le=100 * 2**20)
    compression: Literal["zstd", "snappy", "none"] = "zstd"


class RunnerConfig(_Strict):
    # threads: cheap to start, fine for the sample; processes: CPU-bound synthesis on
    # one machine; dask: a LocalCluster, or a scheduler address for several machines.
    kind: Literal["threads", "processes", "dask"] = "threads"
    max_workers: int | None = Field(None, ge=1)
    dask_address: str | None = None
    # Under Dask, caption tasks require one unit of this worker resource: start GPU
    # workers with `--resources GPU=1` and captions go to them, synthesis anywhere. The
    # LocalCluster we start ourselves declares one, so the same flow runs locally.
    gpu_resource: str = "GPU"


class RunConfig(_Strict):
    name: str = "sample"
    seed: int = 0
    out_dir: Path = Path("out/sample")
    annotations: AnnotationsConfig = AnnotationsConfig()
    images: ImagesConfig = ImagesConfig()
    masks: MaskConfig = MaskConfig()
    synthesis: SynthesisConfig = SynthesisConfig()
    luts: LutsConfig = LutsConfig()
    captions: CaptionsConfig = CaptionsConfig()
    shards: ShardsConfig = ShardsConfig()
    runner: RunnerConfig = RunnerConfig()

    @property
    def images_dir(self) -> Path:
        return self.out_dir / "images"

    @property
    def annotations_path(self) -> Path:
        return self.out_dir / "annotations.arrow"

    def output_relevant(self) -> dict[str, Any]:
        """The part of the config that determines output bytes (not where or how fast)."""
        data = self.model_dump(mode="json", exclude={"out_dir", "runner", "name"})
        # Where the inputs live does not change the bytes; their content does (sha256
        # of the annotation files is recorded separately in the manifest).
        data["annotations"].pop("dir")
        for key in ("sources", "gdrive_url"):
            data["annotations"].pop(key)
        # Only the pixel limit decides which images are usable; how they were fetched
        # does not change their bytes (their sha256 goes into each shard's inputs digest).
        data["images"] = {"max_pixels": self.images.max_pixels}
        # User LUT folders matter by content: the library version in every output
        # covers them; their paths do not change bytes.
        data["luts"].pop("user_dirs")
        # Captions matter by content: a shard's inputs digest covers the caption and
        # phrase-embedding parts it joined (their own digests cover models and settings).
        data.pop("captions")
        return data

    def config_hash(self) -> str:
        blob = json.dumps(self.output_relevant(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ConfigError(UserError, ValueError):
    """The config cannot be used; one line naming the file or override and the key."""


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["synthesis.size=128", "runner.kind=dask"]`` -> nested dict (values as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", None) or exc).strip()
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem})") from None
        _set_dotted(out, key.strip(), value)
    return out


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names valid at ``loc`` (a pydantic error location) inside ``model``."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        sub = getattr(field, "annotation", None) if field else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


def _has_path(data: dict[str, Any], loc: tuple) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def describe_errors(exc: ValidationError, overrides: dict[str, Any], where: str,
                    root: type[BaseModel] | None = None) -> str:
    """One line per problem: the dotted key, what is wrong, where it came from, and for
    an unknown key the closest valid one."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        source = "--set" if loc and _has_path(overrides, loc) else where
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_keys(root or RunConfig, loc), n=1)
            hint = (f"; did you mean {'.'.join(map(str, (*loc[:-1], close[0])))}?" if close
                    else "")
            problems.append(f"{source}: unknown key {key}{hint}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}: {key}: {message}")
    return "; ".join(problems)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_model(root: type[ModelT], path: str | Path | None, overrides: list[str] | dict | None,
               extra: dict[str, Any] | None = None) -> ModelT:
    """Read a YAML file into ``root``, apply ``--set`` overrides and ``extra`` keys,
    validate; every problem is one ``ConfigError`` line naming the file or override."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            reason = str(getattr(exc, "problem", None) or getattr(exc, "strerror", None) or exc)
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(f"{path}: cannot read config{at}: {reason}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a YAML mapping")
        data = loaded or {}
    sets = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    data = _merge(_merge(data, sets), extra or {})
    try:
        return root.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path is not None else "config"
        raise ConfigError(describe_errors(exc, sets, where, root)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None,
                out_dir: str | Path | None = None) -> RunConfig:
    """Read a YAML config, apply overrides, validate. Relative paths in the file are
    taken relative to the repository root, so configs work from any cwd."""
    extra = {"out_dir": str(out_dir)} if out_dir is not None else None
    return _anchor_paths(load_model(RunConfig, path, overrides, extra))


def _anchor_paths(cfg: RunConfig) -> RunConfig:
    def anchored(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (REPO_ROOT / p)
    return cfg.model_copy(update={
        "annotations": cfg.annotations.model_copy(update={"dir": anchored(cfg.annotations.dir)}),
        "images": cfg.images.model_copy(update={"dir": anchored(cfg.images.dir),
                                                "zips": tuple(anchored(z) for z in cfg.images.zips)}),
        "luts": cfg.luts.model_copy(update={"user_dirs": tuple(anchored(d) for d in cfg.luts.user_dirs)}),
    })
