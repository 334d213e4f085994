"""Where the phrase is: a frozen CLIPSeg, a small refinement head, the region losses.

CLIPSeg (Lüddecke & Ecker, CVPR 2022; ``CLIPSegForImageSegmentation``) reads the
composite and the phrase and gives region logits at 352². It runs frozen (eval mode, no
gradients, bf16 autocast on CUDA) on the training device: its preprocessing is done there
too, as its processor does it (bilinear resize of the whole image to 352x352, no crop,
ImageNet mean and std). One difference: the processor resizes the 8-bit photo in fixed
point and rounds, we resize floats: at most one level of the 8-bit photo apart, 0.3 on
average (tested; the processor's own PIL and torchvision backends are up to two apart).
Its weights are not part of our checkpoints: the checkpoint records CLIPSeg's identity
and the digest of its weights, and loading checks the identity.

The refinement head sees the composite beside CLIPSeg's region and outputs a correction
to its logits (zero at initialisation: it starts as CLIPSeg). The colour mismatch is
evidence of where the pasted region is (inharmonious-region localisation), exactly where
CLIPSeg is unsure: two cars, "the one on the left".
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import tasks.core.torch_compat  # noqa: F401  (before transformers' vision classes)
from tasks.captions.models import resolve_clipseg

# CLIP's text context: longer phrases are cut (the CLI says so).
MAX_TOKENS = 77


class FrozenClipSeg(nn.Module):
    """CLIPSeg with its preprocessing, frozen: (composite in [0, 1], token ids, attention
    mask) -> region logits at the composite's size."""

    def __init__(self, spec: str) -> None:
        super().__init__()
        from transformers import CLIPSegForImageSegmentation
        from transformers.utils import logging as hf_logging

        source = resolve_clipseg(spec)
        hf_logging.disable_progress_bar()
        self.spec, self.identity, self.path = spec, source.identity, source.path
        self.net = CLIPSegForImageSegmentation.from_pretrained(source.path, local_files_only=True)
        self.net.eval().requires_grad_(False)
        pre = _processor_config(source.path)
        self.size = int(pre["size"])
        self.register_buffer("mean", torch.tensor(pre["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre["std"]).view(1, 3, 1, 1), persistent=False)

    def weights_digest(self) -> str:
        """sha256 prefix of the weights as they are in memory (checked unchanged at every
        checkpoint: frozen means frozen)."""
        h = hashlib.sha256()
        for name, t in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def train(self, mode: bool = True) -> "FrozenClipSeg":
        return super().train(False)   # always eval: frozen means no dropout either

    def preprocess(self, composite: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(composite, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, composite: torch.Tensor, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        h, w = composite.shape[-2:]
        on_gpu = composite.device.type == "cuda"
        with torch.autocast(composite.device.type, dtype=torch.bfloat16, enabled=on_gpu):
            logits = self.net(input_ids=ids, attention_mask=attention,
                              pixel_values=self.preprocess(composite)).logits
        logits = logits.float().reshape(composite.shape[0], 1, self.size, self.size)
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)


def _processor_config(folder: Path) -> dict:
    """Size, mean and std from the saved processor (read as JSON: no image-processor
    import on the training path)."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            data = data.get("image_processor", data)
            size = data.get("size", {})
            side = size.get("height", size.get("shortest_edge", 352)) if isinstance(size, dict) else size
            return {"size": side, "mean": data.get("image_mean", [0.485, 0.456, 0.406]),
                    "std": data.get("image_std", [0.229, 0.224, 0.225])}
    raise FileNotFoundError(f"{folder}: no processor config")


@lru_cache(maxsize=4)
def tokenizer(spec: str):
    """CLIPSeg's own tokenizer (CLIP's BPE; pads with the end token)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_clipseg(spec).path, local_files_only=True)


def tokenize(spec: str, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(ids, attention mask) padded to the longest phrase, and how many phrases were cut
    at CLIP's 77 tokens."""
    tok = tokenizer(spec)
    full = tok(list(phrases), padding=False, truncation=False)["input_ids"]
    cut = sum(len(ids) > MAX_TOKENS for ids in full)
    out = tok(list(phrases), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    return out["input_ids"], out["attention_mask"], cut


_MIRRORED = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}


def mirror_phrase(phrase: str) -> str:
    """The phrase for the horizontally flipped photo: "the man on the left" names the man
    on the right once the image is mirrored."""
    def swap(m: re.Match) -> str:
        other = _MIRRORED[m.group(0).lower()]
        return other.capitalize() if m.group(0)[0].isupper() else other

    return re.sub(r"\b(leftmost|rightmost|left|right)\b", swap, phrase, flags=re.IGNORECASE)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation), nn.GELU())


class RegionHead(nn.Module):
    """A small U-shaped net (~130k parameters): composite (mapped to [-1, 1]), CLIPSeg's
    probability and its logit in; a correction to the logit out. Two stride-2 steps and a
    dilated convolution give it a view of ~40 px at 256², enough to compare a region's
    colours with its surroundings."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w2 = 2 * width
        self.e1 = _conv(5, width)
        self.e2 = _conv(width, w2, stride=2)
        self.e3 = nn.Sequential(_conv(w2, w2, stride=2), _conv(w2, w2, dilation=2))
        self.d2 = _conv(w2, width)
        self.d1 = _conv(width, width)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)   # starts as CLIPSeg
        nn.init.zeros_(self.out.bias)

    def forward(self, composite: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
        x = torch.cat([composite * 2 - 1, torch.sigmoid(logit), logit.clamp(-20, 20) / 10], dim=1)
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        d2 = self.d2(F.interpolate(e3, size=e2.shape[-2:], mode="bilinear", align_corners=False) + e2)
        d1 = self.d1(F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False) + e1)
        return logit + self.out(d1)


def region_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice against the annotated mask, per sample then averaged: BCE grades
    every pixel, Dice keeps a small region from being outvoted by its background."""
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none").mean(dim=(1, 2, 3))
    p = torch.sigmoid(logits)
    inter = (p * mask).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + mask.sum(dim=(1, 2, 3)) + 1)
    return (bce + dice).mean()
