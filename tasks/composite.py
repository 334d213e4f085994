"""Stage: composite recipes, per-sample randomness and the quality filter.

- ``lut_fg`` (bcmi iHarmony4-style): composite = a(I)*M + I*(1-M), target = I.
- ``lut_pair`` (SSH-style): composite = a(I)*M + b(I)*(1-M), target = b(I).
Every choice a sample makes comes from its own RNG, seeded by the config seed and its
sample id, so a row can be regenerated from its provenance columns alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from schemas.config import SynthesisConfig
from tasks.lut_kernels import composite_u8
from tasks.luts import Lut3D
from tasks.metrics import difficulty


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
    metrics: dict[str, float]


def apply_lut_fg(img: np.ndarray, mask: np.ndarray, lut_a: Lut3D) -> tuple[np.ndarray, np.ndarray]:
    """bcmi-style: target = I, composite = A(I) on the mask, I elsewhere."""
    return composite_u8(img, mask, lut_a)


def apply_lut_pair(img: np.ndarray, mask: np.ndarray, lut_a: Lut3D,
                   lut_b: Lut3D) -> tuple[np.ndarray, np.ndarray]:
    """SSH-style: target = B(I), composite = A(I) on the mask, B(I) elsewhere."""
    return composite_u8(img, mask, lut_a, lut_b)


def choose_recipe(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def synthesize(img: np.ndarray, mask: np.ndarray, cfg: SynthesisConfig,
               rng: np.random.Generator, luts: dict[str, Lut3D]) -> Composite | None:
    """One composite for (img, mask), or None when every attempt was a near no-op.

    The recipe is drawn once; LUTs and strength are redrawn on each attempt.
    """
    recipe = choose_recipe(rng, cfg.recipes)
    ids = sorted(luts)
    for _ in range(cfg.max_attempts):
        strength = float(rng.uniform(cfg.strength_min, cfg.strength_max))
        if recipe == "lut_fg":
            a = ids[int(rng.integers(len(ids)))]
            b = None
            target, composite = apply_lut_fg(img, mask, luts[a].blend(strength))
        else:
            i, j = rng.choice(len(ids), size=2, replace=False)
            a, b = ids[int(i)], ids[int(j)]
            target, composite = apply_lut_pair(img, mask, luts[a].blend(strength),
                                               luts[b].blend(strength))
        metrics = difficulty(composite, target, mask)
        if metrics["fmse"] >= cfg.min_fmse:
            return Composite(target, composite, recipe, a, b, strength, metrics)
    return None
