"""Parametric colour looks -> 3D LUTs: the built-in library.

A look is a chain of steps, each a family (a function of sRGB values in [0, 1]) with
parameters. White balance (a chromatic adaptation by correlated colour temperature) and
exposure act in linear light, as a camera's would; tone, saturation, toning and mixing
act on display values, as a colourist's grade would. ``LOOKS`` lists every built-in look
with its parameters; ``manifest.json`` beside this file records them with checksums.
Powers and sines are ``tasks.core.fixedmath``'s: a look's table must not depend on the CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from lut_library.table_cache import cached_tables
from tasks.core import fixedmath, linalg3
from tasks.synthesize.luts import Lut3D

# Rec.709 luma weights: "how bright a colour looks" for saturation and toning.
LUMA = np.array([0.2126, 0.7152, 0.0722])
_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_SRGB = linalg3.inv(_SRGB_TO_XYZ)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, fixedmath.power_array((x + 0.055) / 1.055, 2.4))


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, None)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * fixedmath.power_array(x, 1 / 2.4) - 0.055)


def _luma(x: np.ndarray) -> np.ndarray:
    return (x[:, 0] * LUMA[0] + x[:, 1] * LUMA[1] + x[:, 2] * LUMA[2])[:, None]


# --- families --------------------------------------------------------------------------

def white_balance(x, cct, tint=0.0):
    """A camera balanced for daylight (D65) shooting under a light of ``cct`` kelvin:
    CAT02 von Kries adaptation from D65 to that white. ``tint`` shifts the white along
    CIE 1960 v (green +, magenta -), like a camera's tint slider."""
    import colour

    xy = colour.temperature.CCT_to_xy(float(cct), method="Kang 2002" if cct < 4000 else
                                      "CIE Illuminant D Series")
    uv = colour.xy_to_UCS_uv(xy) + np.array([0.0, tint])
    white = colour.xy_to_XYZ(colour.UCS_uv_to_xy(uv))
    d65 = colour.xy_to_XYZ(colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"])
    xyz = linalg3.apply(srgb_to_linear(x), _SRGB_TO_XYZ)
    adapted = colour.adaptation.chromatic_adaptation_VonKries(xyz, d65, white / white[1], "CAT02")
    return linear_to_srgb(linalg3.apply(adapted, _XYZ_TO_SRGB))


def exposure(x, ev):
    return linear_to_srgb(srgb_to_linear(x) * fixedmath.pow(2.0, float(ev)))


def gamma(x, g):
    return fixedmath.power_array(np.clip(x, 0.0, 1.0), g)


def contrast(x, amount):
    # Smooth S-curve: slope 1+amount at mid-grey, 1-amount at the ends; |amount| < 1
    # keeps it monotonic, negative values flatten.
    return x - amount * fixedmath.sin_array(2 * np.pi * x) / (2 * np.pi)


def saturation(x, factor):
    y = _luma(x)
    return y + (x - y) * factor


def vibrance(x, amount):
    # Boost (or mute) low-saturation colours more than already-saturated ones.
    y = _luma(x)
    sat = x.max(axis=1, keepdims=True) - x.min(axis=1, keepdims=True)
    return y + (x - y) * (1.0 + amount * (1.0 - sat))


def split_tone(x, shadow_rgb, highlight_rgb, amount):
    w_hi = np.clip(_luma(x), 0.0, 1.0)
    tint = (1 - w_hi) * np.array(shadow_rgb) + w_hi * np.array(highlight_rgb)
    return x + amount * (tint - 0.5)


def fade(x, lift, crush=0.0):
    # Raise the black point (and lower the white point): a matte print.
    return lift + x * (1.0 - lift - crush)


def channel_mix(x, matrix):
    return linalg3.apply(x, matrix)


def film_curve(x, toe, shoulder):
    # A filmic tone curve: a soft toe in the shadows and a rolled-off shoulder.
    y = fixedmath.power_array(np.clip(x, 0.0, 1.0), 1.0 + toe)
    return 1.0 - fixedmath.power_array(1.0 - y, 1.0 + shoulder)


def tinted_mono(x, tint_rgb, amount):
    y = _luma(x)
    tint = np.array(tint_rgb) / max(tint_rgb)
    return (1 - amount) * x + amount * y * tint


FAMILIES = {f.__name__: f for f in (white_balance, exposure, gamma, contrast, saturation, vibrance,
                                     split_tone, fade, channel_mix, film_curve, tinted_mono)}


@dataclass(frozen=True)
class LookSpec:
    id: str
    family: str
    # A chain of (family, params) steps applied in order.
    steps: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = field(default=())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for family, params in self.steps:
            x = FAMILIES[family](x, **dict(params))
        return np.clip(x, 0.0, 1.0)

    def params_json(self) -> list:
        """The steps as plain JSON values (tuples become lists, at any depth)."""
        return json.loads(json.dumps([[f, dict(p)] for f, p in self.steps]))


def look(id_: str, family: str, *steps: tuple[str, dict]) -> LookSpec:
    return LookSpec(id_, family, tuple((f, tuple(sorted(p.items()))) for f, p in steps))


def _looks() -> tuple[LookSpec, ...]:
    out = []
    for cct in (2700, 3200, 3800, 4500, 5200, 7500, 9000, 12000):
        out.append(look(f"wb_{cct}k", "white_balance", ("white_balance", {"cct": cct})))
    for cct, tint in ((4000, 0.006), (4000, -0.006), (8000, 0.006), (8000, -0.006),
                      (6504, 0.008), (6504, -0.008)):
        sign = "green" if tint > 0 else "magenta"
        out.append(look(f"wb_{cct}k_{sign}", "white_balance",
                        ("white_balance", {"cct": cct, "tint": tint})))
    for ev in (-1.5, -1.0, -0.6, -0.3, 0.3, 0.6, 1.0, 1.5):
        out.append(look(f"exposure_{ev:+.1f}", "exposure", ("exposure", {"ev": ev})))
    for g in (0.6, 0.75, 0.87, 1.15, 1.35, 1.6):
        out.append(look(f"gamma_{g:.2f}", "tone_curve", ("gamma", {"g": g})))
    for amount in (-0.5, -0.3, 0.2, 0.4, 0.6, 0.8):
        out.append(look(f"contrast_{amount:+.1f}", "contrast", ("contrast", {"amount": amount})))
    for factor in (0.0, 0.3, 0.6, 1.3, 1.6, 2.0):
        out.append(look(f"saturation_{factor:.1f}", "saturation", ("saturation", {"factor": factor})))
    for amount in (-0.6, 0.8, 1.4):
        out.append(look(f"vibrance_{amount:+.1f}", "vibrance", ("vibrance", {"amount": amount})))
    palettes = {"teal_orange": ((0.30, 0.55, 0.62), (0.70, 0.52, 0.36)),
                "blue_yellow": ((0.30, 0.40, 0.72), (0.68, 0.62, 0.32)),
                "purple_green": ((0.58, 0.36, 0.66), (0.48, 0.66, 0.40)),
                "red_cyan": ((0.70, 0.34, 0.34), (0.36, 0.62, 0.64)),
                "magenta_lime": ((0.66, 0.34, 0.58), (0.58, 0.70, 0.34)),
                "cool_warm": ((0.38, 0.48, 0.66), (0.66, 0.54, 0.42))}
    for name, (shadow, high) in palettes.items():
        for amount in (0.25, 0.5):
            out.append(look(f"split_{name}_{amount:.2f}", "split_tone",
                            ("split_tone", {"shadow_rgb": shadow, "highlight_rgb": high, "amount": amount})))
    for lift in (0.06, 0.12, 0.2):
        for crush in (0.0, 0.1):
            out.append(look(f"fade_{lift:.2f}_{crush:.2f}", "fade", ("fade", {"lift": lift, "crush": crush})))
    mixes = {"green_cast": ((0.90, 0.10, 0.0), (0.0, 1.05, 0.0), (0.0, 0.12, 0.85)),
             "magenta_cast": ((1.08, 0.0, 0.04), (0.0, 0.85, 0.0), (0.05, 0.0, 1.08)),
             "red_boost": ((1.15, -0.05, -0.02), (0.0, 1.0, 0.0), (0.0, 0.0, 0.95)),
             "blue_boost": ((0.95, 0.0, 0.0), (0.0, 1.0, 0.0), (-0.02, -0.05, 1.2)),
             "cyan_shift": ((0.85, 0.1, 0.05), (0.0, 1.02, 0.05), (0.0, 0.05, 1.05)),
             "yellow_shift": ((1.05, 0.05, 0.0), (0.05, 1.02, 0.0), (0.0, 0.0, 0.8)),
             "cross_process": ((1.1, -0.1, 0.1), (-0.05, 1.1, 0.0), (0.1, 0.0, 0.75)),
             "channel_swap_rb": ((0.3, 0.0, 0.7), (0.0, 1.0, 0.0), (0.7, 0.0, 0.3))}
    for name, matrix in mixes.items():
        out.append(look(f"mix_{name}", "channel_mix", ("channel_mix", {"matrix": matrix})))
    for toe, shoulder in ((0.2, 0.3), (0.35, 0.5), (0.5, 0.2), (0.1, 0.8), (0.6, 0.6), (0.0, 0.5)):
        out.append(look(f"film_{toe:.2f}_{shoulder:.2f}", "film_curve",
                        ("film_curve", {"toe": toe, "shoulder": shoulder})))
    tints = {"sepia": (1.0, 0.86, 0.66), "cyanotype": (0.55, 0.78, 1.0),
             "selenium": (0.92, 0.82, 0.90), "gold": (1.0, 0.92, 0.62),
             "green": (0.78, 1.0, 0.74), "blue": (0.70, 0.80, 1.0)}
    for name, tint in tints.items():
        for amount in (0.6, 0.95):
            out.append(look(f"mono_{name}_{amount:.2f}", "tinted_mono",
                            ("tinted_mono", {"tint_rgb": tint, "amount": amount})))
    combos = [
        ("combo_bleach_bypass", ("saturation", {"factor": 0.45}), ("contrast", {"amount": 0.45})),
        ("combo_warm_fade", ("white_balance", {"cct": 3800}), ("fade", {"lift": 0.1, "crush": 0.0})),
        ("combo_cool_contrast", ("white_balance", {"cct": 9000}), ("contrast", {"amount": 0.35})),
        ("combo_vintage", ("fade", {"lift": 0.1, "crush": 0.06}), ("saturation", {"factor": 0.7}),
         ("split_tone", {"shadow_rgb": (0.45, 0.45, 0.6), "highlight_rgb": (0.65, 0.58, 0.42),
                         "amount": 0.3})),
        ("combo_night", ("exposure", {"ev": -1.0}), ("white_balance", {"cct": 12000}),
         ("saturation", {"factor": 0.6})),
        ("combo_golden_hour", ("white_balance", {"cct": 3200}), ("exposure", {"ev": 0.3}),
         ("vibrance", {"amount": 0.5})),
        ("combo_overcast", ("white_balance", {"cct": 7500}), ("contrast", {"amount": -0.3}),
         ("saturation", {"factor": 0.7})),
        ("combo_tungsten_dark", ("white_balance", {"cct": 2700}), ("exposure", {"ev": -0.6})),
        ("combo_faded_film", ("film_curve", {"toe": 0.3, "shoulder": 0.4}), ("fade", {"lift": 0.08})),
        ("combo_punchy", ("contrast", {"amount": 0.5}), ("saturation", {"factor": 1.5})),
        ("combo_flat_log_like", ("contrast", {"amount": -0.6}), ("fade", {"lift": 0.15, "crush": 0.1}),
         ("saturation", {"factor": 0.6})),
        ("combo_teal_shadows_bright", ("exposure", {"ev": 0.6}), ("split_tone", {
            "shadow_rgb": (0.3, 0.55, 0.62), "highlight_rgb": (0.6, 0.5, 0.45), "amount": 0.4})),
        ("combo_fluorescent", ("white_balance", {"cct": 4000, "tint": 0.008}), ("contrast", {"amount": 0.2})),
        ("combo_sunset_mono", ("tinted_mono", {"tint_rgb": (1.0, 0.7, 0.5), "amount": 0.7}),
         ("contrast", {"amount": 0.3})),
        ("combo_underwater", ("channel_mix", {"matrix": ((0.6, 0.2, 0.1), (0.0, 1.0, 0.1), (0.0, 0.1, 1.1))}),
         ("exposure", {"ev": -0.3})),
        ("combo_high_key", ("exposure", {"ev": 1.0}), ("contrast", {"amount": -0.3})),
        ("combo_low_key", ("exposure", {"ev": -1.0}), ("contrast", {"amount": 0.5})),
    ]
    for id_, *steps in combos:
        out.append(look(id_, "combination", *steps))
    return tuple(out)


LOOKS: tuple[LookSpec, ...] = _looks()


def looks_json() -> str:
    """Every built-in look's id and steps: what, with the size, decides its tables."""
    return json.dumps([[lk.id, lk.params_json()] for lk in LOOKS])


@lru_cache(maxsize=4)
def builtin_luts(size: int = 33) -> dict[str, Lut3D]:
    """id -> LUT for every built-in look (per process; across processes the tables are
    kept on disk by ``table_cache``: ~3 s of CPU each time otherwise)."""
    def compute() -> np.ndarray:
        return np.stack([Lut3D.from_function(lk, size).table for lk in LOOKS])

    tables = cached_tables(size, looks_json(), len(LOOKS), compute)
    return {lk.id: Lut3D(table, title=lk.id) for lk, table in zip(LOOKS, tables)}
