"""The text-only evaluation of a ``clipseg_ht`` checkpoint: how well the phrase finds the
region, and what the harmonized image is worth when no one draws a mask.

Rows (every image metric on the annotated foreground, per image then averaged, as in
``train.metrics``): the input composites; HT+ given the annotated mask (the upper
bound); HT+ given CLIPSeg's region and the refined region, each output blended by the
region it was given (a user has no mask to blend by); and the model's own region found
from an empty phrase and from another row's phrase (what the text is worth). Region
IoU against the annotation at the threshold chosen on validation (stored in the
checkpoint), overall and by foreground bin. CLIPSeg was trained on PhraseCut's train
split, so the text-only rows are computed on other splits only; on ``train`` the report
says so and keeps the mask rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from train.metrics import FG_BINS, NAMES, Metrics, RegionMetrics, per_image
from train.models import blend
from train.region import tokenize

LABELS = {"mse": "MSE", "fmse": "fMSE", "psnr": "PSNR", "fpsnr": "fPSNR"}
TEXT_ROWS = ("CLIPSeg region", "refined region", "empty phrase", "another row's phrase")


@torch.no_grad()
def text_only_metrics(model, loader, autocast_ctx, threshold: float, split: str,
                      grid_samples: int = 8) -> tuple[dict[str, Any], list[np.ndarray]]:
    text_rows = split != "train"
    rows: dict[str, Metrics] = {"input composites": Metrics(), "annotated mask": Metrics()}
    regions: dict[str, RegionMetrics] = {}
    if text_rows:
        names = [r for r in TEXT_ROWS if r != "refined region" or model.head is not None]
        rows |= {r: Metrics() for r in names}
        regions = {r: RegionMetrics() for r in names}
    grid: list[np.ndarray] = []
    keys = (*model.text_keys, "phrase_ids", "phrase_attention")
    for batch in loader.epoch(0):
        comp, target, mask, recipes = batch["composite"], batch["target"], batch["mask"], batch["recipe"]
        extras = {k: batch[k] for k in keys}

        def harmonized(region: torch.Tensor, extra: dict = extras) -> torch.Tensor:
            with autocast_ctx():
                out = model.harmonize(comp, region, extra).float()
            return blend(out, comp, region)

        def add(name: str, pred: torch.Tensor, prob: torch.Tensor | None = None) -> None:
            rows[name].add(per_image(pred, target, mask), recipes)
            if prob is not None:
                regions[name].add(prob, mask)

        add("input composites", comp)
        add("annotated mask", harmonized(mask))
        if not text_rows:
            continue
        with autocast_ctx():
            seg, refined = model.regions(comp, extras)
        own = torch.sigmoid((refined if refined is not None else seg).float())
        own_out = harmonized(own)
        add("CLIPSeg region", harmonized(torch.sigmoid(seg.float())), torch.sigmoid(seg.float()))
        if refined is not None:
            add("refined region", own_out, own)
        for name, changed in (("empty phrase", _empty(batch, extras, model)),
                              ("another row's phrase", _rolled(extras))):
            with autocast_ctx():
                s2, r2 = model.regions(comp, changed)
            prob = torch.sigmoid((r2 if r2 is not None else s2).float())
            add(name, harmonized(prob, changed), prob)
        for j in range(min(len(comp), grid_samples - len(grid))):
            cells = [comp[j], own_out[j], target[j], mask[j].expand(3, -1, -1), own[j].expand(3, -1, -1)]
            row = torch.cat([c.float().clamp(0, 1) for c in cells], dim=2)
            grid.append((row.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
    report = {
        "threshold": threshold,
        "rows": {name: m.summary() for name, m in rows.items()},
        "regions": {name: r.summary(threshold) for name, r in regions.items()},
        "text_only": text_rows,
    }
    return report, grid


def _empty(batch: dict, extras: dict, model) -> dict:
    ids, att, _ = tokenize(model.cfg.clipseg, [""] * len(batch["sample_id"]))
    dev = extras["phrase_ids"].device
    out = {**extras, "phrase_ids": ids.to(dev), "phrase_attention": att.to(dev)}
    for key in model.text_keys:   # no phrase: no text embedding either
        out[key] = torch.zeros_like(extras[key])
    return out


def _rolled(extras: dict) -> dict:
    """Each row given the next row's phrase (tokens and embeddings move together)."""
    return {k: v.roll(1, dims=0) for k, v in extras.items()}


def text_only_table(report: dict[str, Any], title: str, split: str) -> str:
    def cell(x: float) -> str:
        return "–" if math.isnan(x) else f"{x:.2f}"

    bins = [label for _, _, label in FG_BINS]
    lines = [f"Text-only evaluation of {title}: image metrics on the annotated foreground (binary mask, "
             "peak 255, 0-255 values at the training size, per image then averaged); each output "
             "blended by the region it was given.", "",
             "| input to HT+ | n | " + " | ".join(LABELS[n] for n in NAMES)
             + " | " + " | ".join(f"fMSE {b}" for b in bins) + " |",
             "|---" * (2 + len(NAMES) + len(bins)) + "|"]
    for name, s in report["rows"].items():
        lines.append(f"| {name} | {s['overall']['n']} | " + " | ".join(cell(s["overall"][k]) for k in NAMES)
                     + " | " + " | ".join(cell(s["by_fg_ratio"][b]["fmse"]) for b in bins) + " |")
    if not report["text_only"]:
        lines += ["", f"Text-only rows not computed on {split!r}: CLIPSeg was trained on PhraseCut's train "
                      "split (evaluate on val or test)."]
        return "\n".join(lines) + "\n"
    lines += ["", f"Region IoU against the annotated mask at threshold {report['threshold']} (chosen on "
                  "validation):", "",
              "| region | n | IoU | " + " | ".join(f"IoU {b}" for b in bins) + " |",
              "|---" * (3 + len(bins)) + "|"]
    for name, r in report["regions"].items():
        lines.append(f"| {name} | {r['overall']['n']} | {r['overall']['iou']:.3f} | "
                     + " | ".join("–" if math.isnan(r["by_fg_ratio"][b]["iou"]) else
                                  f"{r['by_fg_ratio'][b]['iou']:.3f}" for b in bins) + " |")
    return "\n".join(lines) + "\n"
