"""Make torchvision importable beside a CPU-only torch (import this before any model code).

The registry's torchvision 0.28 is a CUDA build: beside the CPU torch 2.13 its import
dies with "operator torchvision::nms does not exist", and so does everything that
imports it (open_clip, transformers' BLIP image processor). Declaring the two operator
schemas it registers fake kernels for lets it import; ``torchvision.ops`` and
``torchvision.io`` still do not work (we decode with OpenCV). Where the real extension
is present (a GPU box), this does nothing.
"""

from __future__ import annotations

import torch

_LIBRARY = None


def ensure_torchvision_importable() -> None:
    global _LIBRARY
    if _LIBRARY is not None:
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018 - the lookup is the test
        _LIBRARY = False
        return
    except (AttributeError, RuntimeError):
        pass
    _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


ensure_torchvision_importable()
