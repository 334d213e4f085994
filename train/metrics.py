"""MSE, fMSE, PSNR, fPSNR exactly as the harmonization papers compute them.

Per image, on 0-255 values (predictions rounded to integers, as a saved PNG would be),
then averaged over images (this project's "clean" protocol; ``train.protocol_ht`` is the
authors' evaluation, reproduced): MSE over H*W*3; fMSE = squared error over the foreground
pixels and channels / (3*|M|), with a binary mask; PSNR = 10*log10(255^2 / MSE) with the
fixed peak 255 (not the image's own maximum); fPSNR likewise from fMSE. Also by
foreground-ratio bin (0-5%, 5-15%, 15-100%) and by recipe (iHarmony4: sub-dataset).
"""

from __future__ import annotations

import math
from typing import Any

import torch

PEAK = 255.0
# An exact prediction has infinite PSNR; this cap keeps averages finite (as the card's).
PSNR_CAP = 100.0
FG_BINS = ((0.0, 0.05, "0-5%"), (0.05, 0.15, "5-15%"), (0.15, 1.0001, "15-100%"))
NAMES = ("mse", "fmse", "psnr", "fpsnr")


def _psnr(err: torch.Tensor) -> torch.Tensor:
    value = 10 * torch.log10(PEAK**2 / err.clamp_min(1e-30))
    capped = torch.where(err > 0, value.clamp_max(PSNR_CAP), torch.full_like(err, PSNR_CAP))
    return torch.where(err.isnan(), err, capped)


def per_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """pred, target (B, 3, H, W) in [0, 1]; mask (B, 1, H, W) {0, 1} -> (B,) each, on the CPU."""
    p = (pred.detach().double().clamp(0, 1) * 255).round()
    t = (target.detach().double() * 255).round()
    m = (mask.detach().double() > 0.5).double()
    sq = (p - t) ** 2
    mse = sq.mean(dim=(1, 2, 3))
    n_fg = m.sum(dim=(1, 2, 3))
    # An empty mask has no foreground error: NaN, left out of the fMSE/fPSNR means (counted).
    fmse = torch.where(
        n_fg > 0, (sq * m).sum(dim=(1, 2, 3)) / (3 * n_fg.clamp_min(1)), torch.full_like(n_fg, math.nan)
    )
    return {
        k: v.float().cpu()
        for k, v in (
            ("mse", mse),
            ("fmse", fmse),
            ("psnr", _psnr(mse)),
            ("fpsnr", _psnr(fmse)),
            ("fg_ratio", n_fg / m[0].numel()),
        )
    }


class Metrics:
    """Accumulates per-image values (a few floats per image: fine for any split)."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = {k: [] for k in (*NAMES, "fg_ratio")}
        self.recipes: list[str] = []

    def add(self, values: dict[str, torch.Tensor], recipes: list[str]) -> None:
        for k in self.values:
            self.values[k].append(values[k])
        self.recipes += list(recipes)

    def _group(self, v: dict[str, torch.Tensor], sel: torch.Tensor) -> dict[str, Any]:
        n = int(sel.sum())
        out: dict[str, Any] = {"n": n}
        for k in NAMES:
            x = v[k][sel].double()
            x = x[~x.isnan()]   # (fMSE, fPSNR of an empty mask)
            out[k] = float(x.mean()) if len(x) else math.nan
        out["empty_masks"] = int(v["fmse"][sel].isnan().sum())
        return out

    def summary(self) -> dict[str, Any]:
        v = {k: torch.cat(x) if x else torch.zeros(0) for k, x in self.values.items()}
        everything = torch.ones(len(self.recipes), dtype=torch.bool)
        recipes = sorted(set(self.recipes))
        return {
            "overall": self._group(v, everything),
            "by_fg_ratio": {
                label: self._group(v, (v["fg_ratio"] >= lo) & (v["fg_ratio"] < hi))
                for lo, hi, label in FG_BINS
            },
            "by_recipe": {
                r: self._group(v, torch.tensor([x == r for x in self.recipes], dtype=torch.bool))
                for r in recipes
            },
        }


def markdown_table(model: dict[str, Any], inputs: dict[str, Any], title: str = "model") -> str:
    """One row per group: the model's metrics beside the input composites'."""
    head = (
        "| rows | n | MSE | fMSE | PSNR | fPSNR | input MSE | input fMSE | input PSNR | input fPSNR |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )

    def cell(x: float) -> str:
        return "–" if math.isnan(x) else f"{x:.2f}"

    def row(label: str, m: dict[str, Any], i: dict[str, Any]) -> str:
        return (
            f"| {label} | {m['n']} | "
            + " | ".join(cell(m[k]) for k in NAMES)
            + " | "
            + " | ".join(cell(i[k]) for k in NAMES)
            + " |"
        )

    lines = [
        f"Metrics of {title} (binary mask, peak 255, 0-255 values at the training size, "
        "per image then averaged); the input composites' values beside them.",
        "",
        head,
        row("all", model["overall"], inputs["overall"]),
    ]
    lines += [
        row(f"foreground {k}", model["by_fg_ratio"][k], inputs["by_fg_ratio"][k])
        for k in model["by_fg_ratio"]
    ]
    lines += [row(f"recipe {k}", model["by_recipe"][k], inputs["by_recipe"][k]) for k in model["by_recipe"]]
    empty = model["overall"].get("empty_masks", 0)
    if empty:
        lines += ["", f"{empty} image(s) with an empty mask: left out of the fMSE and fPSNR means."]
    return "\n".join(lines) + "\n"


# Published iHarmony4 test results (IHD: the mean over all 7,404 test images), for the
# reports' comparison table; MSE, fMSE, PSNR, and where each number comes from.
PUBLISHED = (
    ("input composites", 172.47, 1387.30, 31.63, "iHarmony4 (DoveNet, CVPR 2020)"),
    ("SSH (self-supervised, no iHarmony4 labels)", 89.23, 1140.66, 32.77, "Jiang et al., ICCV 2021"),
    ("DoveNet", 52.36, 549.96, 34.75, "Cong et al., CVPR 2020"),
    ("HT+", 30.46, 341.01, math.nan, "Guo et al., TPAMI 2022 (the plan's table)"),
    ("DucoNet256", 18.47, 212.53, 39.17, "Tan et al., ACM MM 2023"),
)


def published_table() -> str:
    rows = ["| published (IHD) | MSE | fMSE | PSNR | source |", "|---|---|---|---|---|"]
    for name, mse, fmse, psnr, src in PUBLISHED:
        shown = "–" if math.isnan(psnr) else f"{psnr:.2f}"
        rows.append(f"| {name} | {mse:.2f} | {fmse:.2f} | {shown} | {src} |")
    return "\n".join(rows) + "\n"


# Thresholds on a region's probability tried on validation; the best mean IoU is kept.
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(2, 19))


class RegionMetrics:
    """Per-image IoU of a predicted region against the annotated mask, at every threshold
    of ``THRESHOLDS``: the best one is chosen on validation, then reported at it."""

    def __init__(self) -> None:
        self.iou: list[torch.Tensor] = []       # (B, len(THRESHOLDS)) per batch
        self.fg: list[torch.Tensor] = []

    def add(self, prob: torch.Tensor, mask: torch.Tensor) -> None:
        """prob, mask (B, 1, H, W); mask {0, 1}."""
        m = mask.detach() > 0.5
        t = torch.tensor(THRESHOLDS, device=prob.device).view(1, -1, 1, 1)
        p = prob.detach().float() >= t                                          # (B, T, H, W)
        inter = (p & m).sum(dim=(2, 3)).double()
        union = (p | m).sum(dim=(2, 3)).double()
        # Both empty: a perfect answer; the annotation is never empty in our rows.
        self.iou.append(torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).cpu())
        self.fg.append(m.double().mean(dim=(1, 2, 3)).cpu())

    def best_threshold(self) -> float:
        if not self.iou:
            return 0.5
        mean = torch.cat(self.iou).mean(dim=0)
        return THRESHOLDS[int(mean.argmax())]

    def summary(self, threshold: float) -> dict[str, Any]:
        """Mean IoU at ``threshold``: overall and by foreground bin (as the image metrics)."""
        col = THRESHOLDS.index(min(THRESHOLDS, key=lambda t: abs(t - threshold)))
        iou = torch.cat(self.iou)[:, col] if self.iou else torch.zeros(0, dtype=torch.double)
        fg = torch.cat(self.fg) if self.fg else torch.zeros(0, dtype=torch.double)

        def group(sel: torch.Tensor) -> dict[str, Any]:
            n = int(sel.sum())
            return {"n": n, "iou": float(iou[sel].mean()) if n else math.nan}

        return {"threshold": THRESHOLDS[col], "overall": group(torch.ones_like(fg, dtype=torch.bool)),
                "by_fg_ratio": {label: group((fg >= lo) & (fg < hi)) for lo, hi, label in FG_BINS}}
