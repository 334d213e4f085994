"""Stage: composite recipes, per-sample randomness and the quality filter.

Recipes (ANCHORS.md):
- ``lut_pair`` (SSH): composite = a(I)*M + b(I)*(1-M), target = b(I);
- ``lut_fg`` (bcmi iHarmony4): composite = a(I)*M + I*(1-M), target = I;
- ``reinhard``, ``xiao_rgb``, ``hist_ycbcr``, ``idt`` (DoveNet): the foreground's
  colours matched to a same-category object of another image; target = I.
``strength`` s blends each change toward identity in output space: I + s*(change(I) - I).
Every choice comes from the sample's own RNG (config seed + sample id), so a row can be
regenerated from its provenance.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from schemas.config import LUT_RECIPES, SynthesisConfig
from tasks.synthesize.lut_kernels import composite_u8
from tasks.synthesize.luts import Lut3D
from tasks.synthesize.metrics import difficulty
from tasks.synthesize.prejudge import Probe, looks_on, prejudge
from tasks.synthesize.realism import Outline, features, reasons
from tasks.synthesize.references import Reference
from tasks.synthesize.transfers import TransferError, transfer


def sample_seed(seed: int, sample_id: str) -> int:
    """A stable 63-bit seed for one sample (independent of worker count and order)."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class Composite:
    target: np.ndarray
    composite: np.ndarray
    recipe: str
    lut_fg: str | None
    lut_bg: str | None
    strength: float
    reference_task_id: str | None
    metrics: dict[str, float]
    realism: dict[str, float]


def apply_lut_fg(img: np.ndarray, mask: np.ndarray, lut_a: Lut3D,
                 strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """bcmi-style: target = I, composite = A(I) on the mask, I elsewhere."""
    return composite_u8(img, mask, lut_a, None, strength)


def apply_lut_pair(img: np.ndarray, mask: np.ndarray, lut_a: Lut3D, lut_b: Lut3D,
                   strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """SSH-style: target = B(I), composite = A(I) on the mask, B(I) elsewhere."""
    return composite_u8(img, mask, lut_a, lut_b, strength)


def pick_looks(recipe: str, luts: dict[str, Lut3D], rng: np.random.Generator) -> tuple[str, str | None]:
    """A LUT recipe's looks: (look A, look B or None), drawn from ``luts`` in id order."""
    ids = sorted(luts)
    if recipe == "lut_fg":
        return ids[int(rng.integers(len(ids)))], None
    i, j = rng.choice(len(ids), size=2, replace=False)
    return ids[int(i)], ids[int(j)]


def render_looks(img: np.ndarray, mask: np.ndarray, luts: dict[str, Lut3D], lut_a: str, lut_b: str | None,
                 strength: float) -> tuple[np.ndarray, np.ndarray]:
    """(target, composite) of a LUT recipe's draw."""
    if lut_b is None:
        return apply_lut_fg(img, mask, luts[lut_a], strength)
    return apply_lut_pair(img, mask, luts[lut_a], luts[lut_b], strength)


def draw_looks(recipe: str, img: np.ndarray, mask: np.ndarray, luts: dict[str, Lut3D],
               rng: np.random.Generator, strength: float) -> tuple[np.ndarray, np.ndarray, str, str | None]:
    """A LUT recipe's draw: (target, composite, look A, look B or None)."""
    lut_a, lut_b = pick_looks(recipe, luts, rng)
    return (*render_looks(img, mask, luts, lut_a, lut_b, strength), lut_a, lut_b)


def choose_recipe(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = sorted(n for n, w in weights.items() if w > 0)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def judge(target: np.ndarray, composite: np.ndarray, mask: np.ndarray, metrics: dict[str, float],
          cfg: SynthesisConfig, outline: Outline | None = None) -> tuple[list[str], dict[str, float] | None]:
    """The quality filter: (reasons to reject, realism features); no reasons = keep.
    ``outline``: the photo's outline around the mask, when measured once per task."""
    if metrics["fmse"] > cfg.max_fmse or metrics["delta_e"] > cfg.max_delta_e:
        return ["fg_change_above_max"], None
    found = features(target, composite, mask, metrics, outline)
    if isinstance(found, str):
        return [found], None
    return reasons(found, cfg.realism), found


PickReference = Callable[[np.random.Generator], "Reference | str"]


def synthesize(img: np.ndarray, mask: np.ndarray, cfg: SynthesisConfig,
               rng: np.random.Generator, luts: dict[str, Lut3D],
               pick_reference: PickReference | None = None,
               rejections: Counter | None = None, outline: Outline | None = None,
               region: Probe | None = None, avoid: set | None = None) -> Composite | str:
    """One composite for (img, mask), or the reason there is none.

    The recipe is drawn once (so the configured mixture holds); LUTs, references and
    strength are redrawn on each attempt the quality filter rejects. A transfer recipe
    with no same-category reference falls back to the LUT recipes (counted).
    ``rejections`` counts, per recipe, the draws judged (``judged:<recipe>``) and each
    reason the judge gave (``<recipe>:<reason>``). ``outline``: the photo's
    ``tasks.synthesize.realism.mask_outline`` around the mask, measured once by the caller.
    ``region``: ``tasks.synthesize.prejudge.probe`` of the mask, once per task: a LUT draw is then
    judged on those pixels before it is rendered (``prejudged_<recipe>`` counts the
    draws turned down there). ``avoid``: the (recipe, look A, look B, reference) of the
    phrase's earlier composites: drawing one again is a redraw (``duplicate_draw``), so
    two composites of a phrase never share their looks or their reference. A sample with
    no composite after ``max_attempts`` counts ``lost:<recipe>:<last reason>``.
    """
    rejections = rejections if rejections is not None else Counter()
    weights = cfg.recipes
    if float(mask.mean()) < cfg.hist_min_fg_ratio and weights.get("hist_ycbcr", 0) > 0 and any(
            w > 0 for r, w in weights.items() if r != "hist_ycbcr"):
        weights = {r: w for r, w in weights.items() if r != "hist_ycbcr"}   # it fringes small regions
    recipe = choose_recipe(rng, weights)
    reason = "no_attempt"
    for _ in range(cfg.max_attempts):
        strength = float(rng.uniform(cfg.strength_min, cfg.strength_max))
        if recipe == "lut_pair":
            strength *= cfg.pair_strength_scale   # (the same draw: other recipes' rows unchanged)
        lut_a = lut_b = ref_id = None
        if recipe not in LUT_RECIPES:
            ref = pick_reference(rng) if pick_reference else "no_same_category_reference"
            if isinstance(ref, str):
                rejections[f"{recipe}:{ref}"] += 1
                if ref == "no_same_category_reference":
                    lut_weights = {r: w for r, w in cfg.recipes.items() if r in LUT_RECIPES and w > 0}
                    recipe = choose_recipe(rng, lut_weights or {"lut_fg": 1.0})
                reason = ref
                continue
            if avoid and (recipe, None, None, ref.task_id) in avoid:
                rejections[f"{recipe}:duplicate_draw"] += 1
                reason = "duplicate_draw"
                continue
            try:
                composite = transfer(recipe, img, mask, ref.image, ref.mask, rng, strength)
            except TransferError as err:
                rejections[f"{recipe}:{err.reason}"] += 1
                reason = err.reason
                continue
            target = img
            ref_id = ref.task_id
            metrics = difficulty(composite, target, mask)
        else:
            lut_a, lut_b = pick_looks(recipe, luts, rng)
            if avoid and (recipe, lut_a, lut_b, None) in avoid:
                rejections[f"{recipe}:duplicate_draw"] += 1
                reason = "duplicate_draw"
                continue
            exact_de = None
            if region is not None and cfg.prejudge:
                early, exact_de = prejudge(*looks_on(region, luts[lut_a], luts[lut_b] if lut_b else None,
                                                     strength), region.fg_ratio, cfg)
                if early:
                    rejections[f"judged:{recipe}"] += 1
                    rejections[f"prejudged_{recipe}"] += 1
                    for reason in early:
                        rejections[f"{recipe}:{reason}"] += 1
                    reason = early[0]
                    continue
            target, composite = render_looks(img, mask, luts, lut_a, lut_b, strength)
            metrics = difficulty(composite, target, mask, exact_de)
        found, realism = judge(target, composite, mask, metrics, cfg, outline)
        rejections[f"judged:{recipe}"] += 1
        if not found:
            return Composite(target, composite, recipe, lut_a, lut_b, strength, ref_id, metrics, realism)
        for reason in found:
            rejections[f"{recipe}:{reason}"] += 1
        reason = found[0]
    rejections[f"lost:{recipe}:{reason}"] += 1
    return reason
