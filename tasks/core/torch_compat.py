"""Make torchvision importable beside a CPU-only torch (import this before any model code).

The registry's torchvision 0.28 is a CUDA build: beside the CPU torch 2.13 its compiled
extension cannot load, and its import dies with "operator torchvision::nms does not
exist", and so does everything that imports it (open_clip, transformers' BLIP image
processor). Declaring the two operator schemas it registers fake kernels for lets it
import; ``torchvision.ops`` and ``torchvision.io`` still do not work (we decode with
OpenCV). Where the extension loads (a GPU box), it is loaded here and nothing else is
done: declaring the schemas there would clash with its own registration.
"""

from __future__ import annotations

import glob
import importlib.util
import os

import torch

_LIBRARY = None


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True   # no torchvision: nothing to fix
    for path in glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")):
        try:
            torch.ops.load_library(path)
            return True
        except OSError:
            return False
    return False


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
    if _extension_loads():
        _LIBRARY = False
        return
    _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


ensure_torchvision_importable()
