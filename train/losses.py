"""Training losses: HT's 100 x L1 (the default) and iSSAM's foreground-normalised MSE."""

from __future__ import annotations

from typing import Callable

import torch

from schemas.train_config import OptimConfig

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def l1_loss(weight: float, scale: float = 1.0) -> Loss:
    """HT: weight x mean |output - target| over the whole image, on [0, 1] as the authors'
    L1Loss (``scale`` 2: on the [-1, 1] scale, twice that)."""

    def loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return weight * (scale * (out - target)).abs().mean()

    return loss


def fn_mse_loss(min_area: float) -> Loss:
    """iSSAM/iDIH: per image sum of squared error (0-255 values) / (3 x max(|M|, A_min)),
    averaged over the batch: small objects are not drowned by the background."""

    def loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        sq = ((out - target) * 255) ** 2
        area = mask.sum(dim=(1, 2, 3)).clamp_min(min_area)
        return (sq.sum(dim=(1, 2, 3)) / (3 * area)).mean()

    return loss


def make_loss(cfg: OptimConfig) -> Loss:
    if cfg.loss == "l1":
        return l1_loss(cfg.l1_weight, 1.0 if cfg.l1_range == "unit" else 2.0)
    return fn_mse_loss(cfg.fn_mse_min_area)
