"""The authors' evaluation protocol (HT's ``test.py`` + ``evaluation/ih_evaluation.py``),
reproduced step for step, so our numbers can stand beside their published ones.

Their test run reads each iHarmony4 triple with PIL (the mask through ``convert('1')``),
resizes a composite that is not 256 wide to 256x256 with PIL's bilinear filter (the mask
with nearest, as PIL does for mode '1'), blends the model's output into the composite's
background, and saves the output, the real image and the mask with ``tensor2im`` (x255,
clipped, **truncated** to uint8) as JPEG at quality 100 (PIL's default 4:2:0 chroma).
Their evaluation reads those JPEGs back (the mask again through ``convert('1')``, which
dithers the JPEG's grey edge) and computes per image: MSE with skimage (float32
differences, a float64 mean), PSNR = 10 log10(255^2 / MSE), fMSE = torch's mse_loss of
the masked images x 256 x 256 / |mask|, fPSNR from fMSE; then the plain mean over the
images. An empty mask (their division by zero) is left out of the fMSE and fPSNR means
and counted.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SIZE = 256
JPEG_QUALITY = 100


def read_triple(composite: bytes, target: bytes, mask: bytes) -> tuple[np.ndarray, ...] | str:
    """Their loader: (composite, real, mask) as (H, W, 3) uint8 x2 and (H, W) 0/1 uint8 at
    256 (resized when the composite is not 256 wide), or a skip reason."""
    try:
        comp = Image.open(io.BytesIO(composite)).convert("RGB")
        real = Image.open(io.BytesIO(target)).convert("RGB")
        m = Image.open(io.BytesIO(mask)).convert("1")
    except (OSError, ValueError):
        return "undecodable_image"
    if not comp.size == real.size == m.size:
        return "size_mismatch"
    if comp.size[0] != SIZE:   # (theirs looks at the width only)
        comp, real = (im.resize((SIZE, SIZE), Image.BILINEAR) for im in (comp, real))
        m = m.resize((SIZE, SIZE), Image.NEAREST)
    return np.asarray(comp), np.asarray(real), np.asarray(m, dtype=np.uint8)


def _round_trip(rgb01: np.ndarray) -> np.ndarray:
    """``tensor2im`` then a JPEG q100 save and the read back: float32 (H, W, 3), 0-255."""
    u8 = np.clip(rgb01 * 255.0, 0, 255).astype(np.uint8)   # truncation, as theirs
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32)


def _mask_round_trip(mask01: np.ndarray) -> np.ndarray:
    """The saved mask (3 channels, JPEG q100) read back through ``convert('1')``: 0/1 float32."""
    u8 = np.repeat((np.clip(mask01, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("1"), dtype=np.float32)


def per_image(harmonized01: np.ndarray, real01: np.ndarray, mask01: np.ndarray) -> dict[str, float]:
    """Their four numbers for one image: (H, W, 3) floats in [0, 1] (the harmonized image
    already blended), (H, W) mask in {0, 1}."""
    h, r, m = _round_trip(harmonized01), _round_trip(real01), _mask_round_trip(mask01)
    mse = float(np.mean((h - r) ** 2, dtype=np.float64))
    psnr = 10 * math.log10(255.0**2 / mse) if mse > 0 else math.inf
    ht, rt = torch.from_numpy(h).permute(2, 0, 1)[None], torch.from_numpy(r).permute(2, 0, 1)[None]
    mt = torch.from_numpy(m)[None, None]
    fore = mt.sum()
    if fore.item() == 0:
        return {"mse": mse, "psnr": psnr, "fmse": math.nan, "fpsnr": math.nan, "fg_ratio": 0.0}
    fmse = (F.mse_loss(ht * mt, rt * mt) * SIZE * SIZE / fore).item()
    fpsnr = 10 * math.log10(255.0**2 / fmse) if fmse > 0 else math.inf
    return {"mse": mse, "psnr": psnr, "fmse": fmse, "fpsnr": fpsnr, "fg_ratio": float(m.mean())}


def per_image_batch(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``per_image`` over a batch: pred (already blended), target (B, 3, H, W) in [0, 1],
    mask (B, 1, H, W) -> (B,) tensors, as ``train.metrics.per_image`` gives."""
    rows = [per_image(p.permute(1, 2, 0).float().cpu().numpy(), t.permute(1, 2, 0).float().cpu().numpy(),
                      m[0].float().cpu().numpy()) for p, t, m in zip(pred, target, mask)]
    return {k: torch.tensor([r[k] for r in rows], dtype=torch.float64) for k in rows[0]}
