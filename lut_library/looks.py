"""Parametric colour looks -> 3D LUTs.

Each look is a family (a function of sRGB values in [0, 1]) plus parameters. Exposure
and white balance act in linear light, as a camera would; tone, saturation and toning
act on display-referred values, as a colourist's grade would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from tasks.luts import Lut3D

# Rec.709 luma weights: "how bright a colour looks" for saturation and toning.
LUMA = np.array([0.2126, 0.7152, 0.0722])


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, None)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _luma(x: np.ndarray) -> np.ndarray:
    return (x @ LUMA)[:, None]


def exposure(x, ev):
    return linear_to_srgb(srgb_to_linear(x) * 2.0 ** ev)


def white_balance(x, r_gain, b_gain):
    # Gains in linear light, renormalised so green (and so roughly luminance) holds.
    return linear_to_srgb(srgb_to_linear(x) * np.array([r_gain, 1.0, b_gain]))


def contrast(x, amount):
    # Smooth S-curve: slope 1+amount at mid-grey, 1-amount at the ends; |amount| < 1
    # keeps it monotonic, negative values flatten.
    return x - amount * np.sin(2 * np.pi * x) / (2 * np.pi)


def gamma(x, g):
    return np.clip(x, 0.0, 1.0) ** g


def saturation(x, factor):
    y = _luma(x)
    return y + (x - y) * factor


def vibrance(x, amount):
    # Boost low-saturation colours more than already-saturated ones.
    y = _luma(x)
    sat = x.max(axis=1, keepdims=True) - x.min(axis=1, keepdims=True)
    return y + (x - y) * (1.0 + amount * (1.0 - sat))


def split_tone(x, shadow_rgb, highlight_rgb, amount):
    y = _luma(x)
    w_hi = np.clip(y, 0.0, 1.0)
    tint = (1 - w_hi) * np.array(shadow_rgb) + w_hi * np.array(highlight_rgb)
    return x + amount * (tint - 0.5)


def fade(x, lift, crush=0.0):
    # Raise the black point (and optionally lower the white point): a matte print.
    return lift + x * (1.0 - lift - crush)


def channel_mix(x, matrix):
    return x @ np.asarray(matrix, dtype=np.float64).T


def film_curve(x, toe, shoulder):
    # A filmic tone curve: a soft toe in the shadows and a rolled-off shoulder.
    y = x ** (1.0 + toe)
    return 1.0 - (1.0 - y) ** (1.0 + shoulder)


def tinted_mono(x, tint_rgb, amount):
    y = _luma(x)
    return (1 - amount) * x + amount * y * np.array(tint_rgb) / max(tint_rgb)


FAMILIES = {
    "exposure": exposure, "white_balance": white_balance, "contrast": contrast,
    "gamma": gamma, "saturation": saturation, "vibrance": vibrance,
    "split_tone": split_tone, "fade": fade, "channel_mix": channel_mix,
    "film_curve": film_curve, "tinted_mono": tinted_mono,
}


@dataclass(frozen=True)
class LookSpec:
    id: str
    # A chain of (family, params) steps applied in order.
    steps: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = field(default=())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for family, params in self.steps:
            x = FAMILIES[family](x, **dict(params))
        return np.clip(x, 0.0, 1.0)

    def to_json(self) -> dict:
        return {"id": self.id, "steps": [[f, dict(p)] for f, p in self.steps]}


def look(id_: str, *steps: tuple[str, dict]) -> LookSpec:
    return LookSpec(id_, tuple((f, tuple(sorted(p.items()))) for f, p in steps))


# The first set of looks: each a plausible camera or grading mismatch.
LOOKS: tuple[LookSpec, ...] = (
    look("exposure_up", ("exposure", {"ev": 0.6})),
    look("exposure_down", ("exposure", {"ev": -0.7})),
    look("wb_warm", ("white_balance", {"r_gain": 1.18, "b_gain": 0.80})),
    look("wb_cool", ("white_balance", {"r_gain": 0.84, "b_gain": 1.22})),
    look("contrast_high", ("contrast", {"amount": 0.35})),
    look("contrast_low", ("contrast", {"amount": -0.3})),
    look("gamma_bright", ("gamma", {"g": 0.75})),
    look("gamma_dark", ("gamma", {"g": 1.35})),
    look("saturation_up", ("saturation", {"factor": 1.45})),
    look("saturation_down", ("saturation", {"factor": 0.5})),
    look("vibrance_up", ("vibrance", {"amount": 0.6})),
    look("teal_orange", ("split_tone", {"shadow_rgb": (0.35, 0.55, 0.62),
                                        "highlight_rgb": (0.66, 0.52, 0.38), "amount": 0.35})),
    look("matte_fade", ("fade", {"lift": 0.12, "crush": 0.05})),
    look("green_cast", ("channel_mix", {"matrix": ((0.92, 0.08, 0.0), (0.02, 1.02, 0.0),
                                                   (0.0, 0.1, 0.88))})),
    look("magenta_cast", ("channel_mix", {"matrix": ((1.06, 0.0, 0.02), (0.0, 0.88, 0.0),
                                                     (0.03, 0.0, 1.05))})),
    look("film_soft", ("film_curve", {"toe": 0.25, "shoulder": 0.4})),
    look("sepia", ("tinted_mono", {"tint_rgb": (1.0, 0.86, 0.66), "amount": 0.8})),
    look("bleach_bypass", ("saturation", {"factor": 0.55}), ("contrast", {"amount": 0.3})),
    look("warm_faded", ("white_balance", {"r_gain": 1.1, "b_gain": 0.88}),
         ("fade", {"lift": 0.08})),
    look("cool_contrast", ("white_balance", {"r_gain": 0.9, "b_gain": 1.12}),
         ("contrast", {"amount": 0.25})),
)


def library_version(looks: tuple[LookSpec, ...] = LOOKS, size: int = 33) -> str:
    blob = json.dumps({"size": size, "looks": [lk.to_json() for lk in looks]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@lru_cache(maxsize=4)
def build_library(size: int = 33) -> dict[str, Lut3D]:
    """id -> LUT for every built-in look (cached per process: a few ms each)."""
    return {lk.id: Lut3D.from_function(lk, size, title=lk.id) for lk in LOOKS}
