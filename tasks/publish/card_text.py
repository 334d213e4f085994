"""The fixed prose of the dataset card: what each recipe does, what each skip or redraw
reason means, where the photos come from and under which licence, and what to cite."""

from __future__ import annotations

RECIPES = {
    "lut_pair": "SSH-style (Jiang et al., ICCV 2021): the photo is graded with two different "
                "3D LUT looks; the composite shows look A inside the mask and look B outside, "
                "the target is look B everywhere.",
    "lut_fg": "iHarmony4-style (bcmi's HYouTube/iHarmony4 scripts): one look A is applied "
              "inside the mask only; the target is the untouched photo.",
    "reinhard": "DoveNet's first transfer (Cong et al., CVPR 2020): the region's mean and "
                "spread in Ruderman's lαβ space are matched to an object of the same category "
                "in another photo of the same split (Reinhard et al., 2001).",
    "xiao_rgb": "DoveNet's second transfer: the region's RGB mean and covariance are matched "
                "to the reference object's (Xiao and Ma, 2006).",
    "hist_ycbcr": "DoveNet's third transfer: each YCbCr channel's cumulative histogram is "
                  "mapped onto the reference object's.",
    "idt": "DoveNet's fourth transfer: Pitié's iterative distribution transfer (10 random "
           "rotations, 300 bins) followed by regrain, towards the reference object.",
}

# Reasons in skip counts and redraw notes, in words. Unknown reasons are shown as is.
REASONS = {
    "no_same_category_reference": "no other image of the split has an object of this "
                                  "category, so a LUT recipe was drawn instead",
    "reference_image_unavailable": "the reference photo could not be read (a redraw picked "
                                   "another)",
    "reference_polygon_unusable": "the reference object's polygons were unusable",
    "reference_mask_too_small": "the reference object was too small at the stored size",
    "fg_change_above_max": "the change was implausibly large (over the quality ceiling)",
    "duplicate_draw": "the draw repeated an earlier composite's looks or reference for the "
                      "same phrase",
    # The realism judge (tasks/synthesize/realism.py; thresholds in synthesis.realism).
    "invisible_change": "the change was too small to see (the judge's visibility floor)",
    "fg_greyed": "a colourful region lost most of its chroma",
    "fg_colourised": "a near-grey region was painted a strong colour",
    "fg_oversaturated": "a coloured region's chroma was multiplied: painted, not re-lit",
    "neutral_painted": "the region's white, grey or metal parts took a strong colour (a white "
                       "cup turned orange, a silver spoon gold)",
    "mono_scene": "a colourful region in a monochrome or one-tint scene",
    "hue_rotated": "the region's hue turned far: another object colour, not another light",
    "chroma_speckle": "chroma speckle or posterisation far above the photo's own",
    "boundary_halo": "the mask's edge band changed unlike its interior (fringe or halo)",
    "texture_changed": "the region's luma texture was flattened or amplified",
    "new_clipping": "a large share of the region was newly blown out or crushed",
    "no_outline": "the photo shows no edge where the mask ends: a shape cut out of a "
                  "surface, not an object",
    "seam": "the change drew an edge where the photo has none (the mask cuts through the "
            "background: a panel)",
    "mask_too_thin": "the mask has no interior once its 2-px edge band is taken off",
    "mask_empty": "the mask has no pixels",
    "phrase_names_stuff": "the phrase names stuff (sky, grass, wall, ...), not an object "
                          "(synthesis.skip_head_nouns)",
    "phrase_names_see_through": "the phrase names see-through eyewear (glasses): its region is "
                                "mostly what lies behind it (synthesis.skip_see_through_nouns)",
    "mask_box_shaped": "the mask is a box around a region, not an object's outline "
                       "(synthesis.max_box_fill)",
    "mask_no_outline": "the photo shows no edge where the mask ends (a region cut out of a "
                       "surface; synthesis.realism.min_outline_contrast)",
    "mask_loose_outline": "the mask's outline runs where the photo shows no edge for much of "
                          "its length (a polygon cut through background: a change would "
                          "draw seams; synthesis.max_loose_outline)",
    "mask_empty_after_erosion": "the region has no interior once its edge band is taken off",
    "reference_mask_empty_after_erosion": "the reference object has no interior once its "
                                          "edge band is taken off",
    "source_blown": "the region is mostly blown out: no colour to transfer",
    "reference_blown": "the reference object is mostly blown out",
    "fg_ratio_below_min": "the region is smaller than synthesis.min_fg_ratio",
    "fg_ratio_above_max": "the region covers more than synthesis.max_fg_ratio",
    "polygon_far_outside_image": "polygon points lie far outside the image",
    "polygon_empty": "the task has no polygon points",
    "polygon_degenerate": "every polygon has fewer than 2 points",
    "polygon_not_finite": "a polygon point is NaN or infinite",
    "image_missing": "the photo was not found at the source",
    "image_corrupt": "the photo's bytes do not decode",
    "image_too_large": "the photo (or its claimed size) exceeds images.max_pixels",
    "image_failed": "the photo could not be downloaded",
    "image_unreadable": "the acquired photo could not be decoded",
    "task_missing_key": "a key of the official format is missing",
    "task_image_not_in_split_file": "the task's image is not in image_data_split.json",
    "task_image_record_skipped": "the task's image record was skipped (see its reason)",
    "task_split_differs_from_image_split": "the task's file says another split than "
                                           "image_data_split.json (kept out of both)",
    "task_duplicate_id": "the task id was already read (in this or an earlier file)",
    "task_nested_too_deep": "values nested deeper than annotations.limits.max_depth",
    "task_phrase_too_long": "the phrase is longer than annotations.limits.max_phrase_chars",
    "task_too_many_instances": "more instances than annotations.limits.max_instances",
    "task_too_many_points": "more polygon points than annotations.limits.max_points",
    "task_bad_phrase_structure": "phrase_structure is not the official shape",
}


def describe(reason: str) -> str:
    """A reason code in words: ``reason``, ``reason:detail`` or ``recipe:reason``."""
    head, _, tail = reason.partition(":")
    if head in RECIPES and tail:
        return f"{head}: {REASONS.get(tail, tail.replace('_', ' '))}"
    text = REASONS.get(head)
    if text is None:
        return reason.replace("_", " ")
    return f"{text} ({tail})" if tail else text


VGPHRASECUT_SOURCE = """\
Photos: [Visual Genome](https://visualgenome.org/) (Krishna et al., 2017), licensed
[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/). Phrases and region polygons:
[VGPhraseCut](https://github.com/ChenyunWu/PhraseCutDataset) (Wu et al., CVPR 2020),
built on Visual Genome; its repository states no licence of its own, so use it under
Visual Genome's terms and cite both. The composites, masks at the stored size and all
derived columns are this dataset's; the looks are PhraseHarmony's own (parametric
recipes, no third-party LUTs unless added by `luts.user_dirs`)."""

SAMPLE_SOURCE = """\
This is the bundled **sample**: VGPhraseCut-format annotations drawn by hand for eight
photos that ship inside Python packages (not Visual Genome photos):

| image id | photo | from | licence |
|---|---|---|---|
| 9100001 | astronaut (Eileen Collins) | scikit-image | public domain (NASA) |
| 9100002 | chelsea (cat) | scikit-image | CC0 (Stefan van der Walt) |
| 9100003 | coffee | scikit-image | CC0 (Rachel Michetti) |
| 9100004 | rocket | scikit-image | public domain (SpaceX) |
| 9100005 | stereo motorcycle (left) | scikit-image | Middlebury 2014 stereo data \
(Scharstein et al., GCPR 2014): cite it |
| 9100006 | china | scikit-learn | CC BY 2.0 (danielbuechele on Flickr) |
| 9100007 | flower | scikit-learn | CC BY 2.0 (vultilion on Flickr) |
| 9100008 | Grace Hopper | matplotlib | public domain (U.S. Navy) |"""

CITATION = """\
```bibtex
@inproceedings{wu2020phrasecut,
  title     = {PhraseCut: Language-based Image Segmentation in the Wild},
  author    = {Wu, Chenyun and Lin, Zhe and Cohen, Scott and Bui, Trung and Maji, Subhransu},
  booktitle = {CVPR}, year = {2020}}
@article{krishna2017visualgenome,
  title   = {Visual Genome: Connecting Language and Vision Using Crowdsourced Dense Image Annotations},
  author  = {Krishna, Ranjay and Zhu, Yuke and Groth, Oliver and Johnson, Justin and Hata, Kenji
             and Kravitz, Joshua and Chen, Stephanie and Kalantidis, Yannis and Li, Li-Jia
             and Shamma, David A. and Bernstein, Michael S. and Fei-Fei, Li},
  journal = {IJCV}, volume = {123}, pages = {32--73}, year = {2017}}
@inproceedings{cong2020dovenet,
  title     = {DoveNet: Deep Image Harmonization via Domain Verification},
  author    = {Cong, Wenyan and Zhang, Jianfu and Niu, Li and Liu, Liu and Ling, Zhixin
               and Li, Weiyuan and Zhang, Liqing},
  booktitle = {CVPR}, year = {2020}}
@inproceedings{jiang2021ssh,
  title     = {SSH: A Self-Supervised Framework for Image Harmonization},
  author    = {Jiang, Yifan and Zhang, He and Zhang, Jianming and Wang, Yilin and Lin, Zhe
               and Sunkavalli, Kalyan and Chen, Simon and Amirghodsi, Sohrab and Kong, Sarah
               and Wang, Zhangyang},
  booktitle = {ICCV}, year = {2021}}
```"""
