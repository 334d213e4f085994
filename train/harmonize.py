"""Harmonize a user's photo with a trained checkpoint: the region named by a phrase
(``clipseg_ht``) or given as a mask (every kind), the result at the photo's full size.

The model runs at its training size. Its colour change is carried back to full
resolution as local affine colour maps (a guided filter's, He et al.: in each small
window of the thumbnail, the 3x3 matrix and offset that best turn the input's colours
into the output's, regularised toward the identity), upsampled and applied to the
full-size pixels: the photo keeps its own detail and sharpness, and only the colours
change. Blended by the region: with a mask, every pixel outside it is the input's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from schemas.errors import UserError
from train import checkpoint
from train.evaluate import load_model, pick_device
from train.models import split_output

# Photos above this many pixels are refused (the maps for 100 MP need ~5 GB).
MAX_PIXELS = 60_000_000
# The colour maps: window radius at the training size, and the pull toward the identity
# (on [0, 1] values; a flat window keeps the identity matrix and takes the offset).
# Measured on four looks applied to a 512² photo from a 256² thumbnail: 36.8-42.0 dB
# against the look applied at full size (an upsampled thumbnail: 22-24 dB); radius 1 is
# ~2 dB closer on clean looks, but 5x5 windows also average HT+'s 4x4 patch seams.
MAP_RADIUS, MAP_EPS = 2, 1e-3
# Full-size rows processed at a time (bounds memory to ~100 MB for a 24 MP photo).
BAND_ROWS = 512


class HarmonizeError(UserError):
    """An input ``harmonize`` cannot use; the message names it."""


def read_image(path: Path) -> tuple[np.ndarray, list[str]]:
    """uint8 RGB (H, W, 3) with the EXIF orientation applied, and notes on conversions
    (grey, alpha, 16-bit). Unreadable or too large: ``HarmonizeError``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    notes: list[str] = []
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise HarmonizeError(f"{path}: {im.width}x{im.height} is over {MAX_PIXELS / 1e6:g} MP; "
                                     "downscale it first")
            im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                arr = np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8)
                notes.append(f"{path}: 16-bit grey, converted to 8-bit RGB")
                return np.repeat(arr[..., None], 3, axis=2), notes
            if mode not in ("RGB", "L", "LA", "RGBA", "P", "CMYK", "YCbCr"):
                raise HarmonizeError(f"{path}: image mode {mode} is not supported (want RGB, grey or RGBA)")
            if mode in ("L", "LA"):
                notes.append(f"{path}: a grey image, converted to RGB")
            if mode in ("RGBA", "LA") or (mode == "P" and "transparency" in im.info):
                notes.append(f"{path}: its alpha channel is ignored")
            return np.asarray(im.convert("RGB")), notes
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise HarmonizeError(f"{path}: not a readable image ({exc})") from None


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask of the photo's (H, W): any image, foreground where it is above half."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            m = np.asarray(ImageOps.exif_transpose(im).convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise HarmonizeError(f"{path}: not a readable mask image ({exc})") from None
    if m.shape != shape:
        raise HarmonizeError(f"{path}: the mask is {m.shape[1]}x{m.shape[0]}, "
                             f"the photo {shape[1]}x{shape[0]}")
    return m > 127


@dataclass
class Result:
    output: np.ndarray                   # uint8 RGB, the input's size
    region: np.ndarray                   # float32 [0, 1], the input's size
    notes: list[str] = field(default_factory=list)
    empty: bool = False                  # the phrase found no region: output is the input


class Harmonizer:
    """A checkpoint ready to harmonize photos (loaded once, for a batch)."""

    def __init__(self, ckpt: Path, device: str = "auto") -> None:
        self.ckpt = checkpoint.resolve(ckpt)
        self.device = pick_device(device)
        self.model, self.cfg, meta = load_model(self.ckpt, self.device)
        self.size = self.cfg.data.size
        self.threshold = float(meta.get("region_threshold") or 0.5)
        self.kind = self.cfg.model.kind

    def __call__(self, image: np.ndarray, phrase: str | None = None,
                 mask: np.ndarray | None = None) -> Result:
        if (phrase is None) == (mask is None):
            raise HarmonizeError("give a phrase or a mask (one of them)")
        notes: list[str] = []
        small = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        comp = torch.from_numpy(small).permute(2, 0, 1)[None].float().div(255).to(self.device)
        extras = {k: torch.zeros(1, int(self.model.text_dim), device=self.device)
                  for k in getattr(self.model, "text_keys", ())}
        if extras:
            notes.append(f"{self.kind} reads CLIP text embeddings, which a photo has none of: it is "
                         "conditioned on a zero vector")
        with torch.no_grad():
            if mask is not None:
                region_small = cv2.resize(mask.astype(np.float32), (self.size, self.size),
                                          interpolation=cv2.INTER_AREA)
                region = torch.from_numpy((region_small > 0.5).astype(np.float32))[None, None].to(self.device)
                if self.kind == "clipseg_ht":
                    out = self.model.harmonize(comp, region, extras)
                else:
                    out = split_output(self.model(comp, region, extras))[0]
            else:
                if self.kind != "clipseg_ht":
                    raise HarmonizeError(f"{self.ckpt}: a {self.kind} model harmonizes a region it is given: "
                                         "pass --mask (a phrase needs a clipseg_ht model)")
                if not phrase.strip():
                    raise HarmonizeError("the phrase is empty: say which region to harmonize")
                from train.region import MAX_TOKENS, tokenize

                ids, att, cut = tokenize(self.cfg.model.clipseg, [phrase])
                if cut:
                    notes.append(f"the phrase is longer than CLIP's {MAX_TOKENS} tokens: cut to its first "
                                 f"{MAX_TOKENS}")
                extras |= {"phrase_ids": ids.to(self.device), "phrase_attention": att.to(self.device)}
                seg, refined = self.model.regions(comp, extras)
                region = torch.sigmoid((refined if refined is not None else seg).float())
                if not bool((region >= self.threshold).any()):
                    notes.append(f"no region found for {phrase!r} (nothing above the threshold "
                                 f"{self.threshold}): the photo is returned unchanged")
                    h, w = image.shape[:2]
                    return Result(image.copy(), np.zeros((h, w), np.float32), notes, empty=True)
                out = self.model.harmonize(comp, region, extras)
        out_small = out.float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        region_small = region[0, 0].float().cpu().numpy()
        maps = colour_maps(small.astype(np.float64) / 255, out_small.astype(np.float64), region_small)
        full_region = mask.astype(np.float32) if mask is not None else None
        output, up_region = apply_maps(image, maps, region_small, full_region)
        return Result(output, up_region, notes)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def colour_maps(p: np.ndarray, q: np.ndarray, region: np.ndarray, r: int = MAP_RADIUS,
                eps: float = MAP_EPS) -> np.ndarray:
    """(S, S, 12) float32: per pixel the 3x3 matrix A and offset b with q ~ A p + b in its
    window, least squares with eps * |A - I|^2 (the guided filter's linear model, toward
    the identity instead of zero); q is the output blended by the region, so outside it
    the maps are the identity."""
    q = p + (q - p) * region[..., None]
    mp, mq = _box(p, r), _box(q, r)
    pp = np.einsum("hwi,hwj->hwij", p, p).reshape(*p.shape[:2], 9)
    qp = np.einsum("hwi,hwj->hwij", q, p).reshape(*p.shape[:2], 9)
    eye = np.eye(3)
    cov_pp = _box(pp, r).reshape(*p.shape[:2], 3, 3) - np.einsum("hwi,hwj->hwij", mp, mp) + eps * eye
    cov_qp = _box(qp, r).reshape(*p.shape[:2], 3, 3) - np.einsum("hwi,hwj->hwij", mq, mp) + eps * eye
    a = cov_qp @ np.linalg.inv(cov_pp)
    b = mq - np.einsum("hwij,hwj->hwi", a, mp)
    coeffs = np.concatenate([a.reshape(*p.shape[:2], 9), b], axis=2)
    return _box(coeffs, r).astype(np.float32)   # averaged over the windows covering each pixel


def apply_maps(image: np.ndarray, maps: np.ndarray, region_small: np.ndarray,
               region_full: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The maps upsampled (bilinear) and applied to the full-size photo, band by band,
    blended by the region (the given full-size mask, or the small region upsampled)."""
    h, w = image.shape[:2]
    s = maps.shape[0]
    out = np.empty_like(image)
    region_out = np.empty((h, w), np.float32)
    xs = ((np.arange(w, dtype=np.float32) + 0.5) * (s / w) - 0.5)
    for y0 in range(0, h, BAND_ROWS):
        y1 = min(h, y0 + BAND_ROWS)
        ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * (s / h) - 0.5)
        mx, my = np.meshgrid(xs, ys)
        coeffs = np.dstack([cv2.remap(maps[..., k:k + 4], mx, my, cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE) for k in range(0, 12, 4)])
        px = image[y0:y1].astype(np.float32) / 255
        a, b = coeffs[..., :9].reshape(y1 - y0, w, 3, 3), coeffs[..., 9:]
        mapped = np.einsum("hwij,hwj->hwi", a, px) + b
        if region_full is not None:
            reg = region_full[y0:y1]
        else:
            reg = np.clip(cv2.remap(region_small.astype(np.float32), mx, my, cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE), 0, 1)
        blended = (np.clip(mapped, 0, 1) * 255 + 0.5).astype(np.uint8)
        band = image[y0:y1]
        if region_full is not None:   # outside the mask: the input, bit for bit
            out[y0:y1] = np.where(reg[..., None] > 0.5, blended, band)
        else:
            out[y0:y1] = (band + (blended.astype(np.float32) - band) * reg[..., None] + 0.5).astype(np.uint8)
        region_out[y0:y1] = reg
    return out, region_out


def side_by_side(image: np.ndarray, region: np.ndarray, output: np.ndarray, height: int = 512) -> np.ndarray:
    """input | region | output, scaled to ``height`` rows (for ``--show``)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * height / h)), height)
    cells = [image, np.repeat((region * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2), output]
    return np.concatenate([cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in cells], axis=1)


def write_image(path: Path, rgb: np.ndarray) -> None:
    from tasks.core.files import write_bytes_atomic

    ext = path.suffix.lower() or ".png"
    ok, data = cv2.imencode(ext if ext in (".png", ".jpg", ".jpeg", ".webp") else ".png", rgb[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else [])
    if not ok:
        raise HarmonizeError(f"{path}: cannot encode the image")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data.tobytes())
