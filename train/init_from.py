"""Pretrain, then fine-tune: start a run from another run's weights (or the authors' HT+).

The source is a run folder, a checkpoint folder, its ``model.safetensors`` or the
authors' ``latest_net_G.pth``. Its weights go into the new model by name: an ``ht``
source initialises HT+ itself, or the HT+ inside ``ht_text`` (its adaLN stays at zero, so
the model starts as the source) and ``clipseg_ht`` (``ht.*``; the refinement head stays
at its initial value). Every source tensor must land on a tensor of the same shape; the
new model's tensors the source lacks are named in the log. The optimizer and schedule
start afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch

from train import checkpoint


def source_weights(path: Path, patch: int = 4) -> tuple[dict[str, torch.Tensor], dict[str, str], Path]:
    """(weights in our names, their checkpoint's metadata, the file or folder used)."""
    ckpt = checkpoint.resolve(path)
    if ckpt.is_file():
        from train.ht_authors import from_authors, load_authors_file

        return from_authors(load_authors_file(ckpt), patch), {"source": "authors", "kind": "ht"}, ckpt
    meta = checkpoint.read_meta(ckpt)
    kind = json.loads(meta.get("model_signature", "{}")).get("kind", "ht")
    return checkpoint.load_weights(ckpt), {**meta, "kind": kind}, ckpt


def initialise(model: torch.nn.Module, path: Path, say: Callable[[str], None] | None) -> str:
    """Copy the source's weights into ``model``; returns a digest of what was copied."""
    patch = getattr(getattr(model, "cfg", None), "patch", 4)
    weights, meta, ckpt = source_weights(path, patch)
    own = model.state_dict()
    # An HT+ source into a model holding HT+ under a prefix (clipseg_ht: ``ht.``).
    nested = any(k.startswith("ht.") for k in own) and not any(k.startswith("ht.") for k in weights)
    prefix = "ht." if nested else ""
    mapped = {prefix + k: v for k, v in weights.items()}
    for key, value in sorted(mapped.items()):
        if key not in own:
            raise checkpoint.CheckpointError(f"{ckpt}: its tensor {key!r} has no place in a "
                                             f"{type(model).__name__} of this config")
        if tuple(own[key].shape) != tuple(value.shape):
            raise checkpoint.CheckpointError(
                f"{ckpt}: {key!r} is {tuple(value.shape)} there and {tuple(own[key].shape)} here "
                "(another model config: match dim, depth, heads, ffn, patch and data.size)")
    model.load_state_dict(mapped, strict=False)
    fresh = sorted(k for k in own if k not in mapped)
    if say:
        say(f"initialised from {ckpt} ({meta.get('source') or meta.get('kind')}: {len(mapped)} tensors)"
            + (f"; at their initial values: {len(fresh)} tensors ({', '.join(fresh[:4])}"
               f"{', ...' if len(fresh) > 4 else ''})" if fresh else ""))
    h = hashlib.sha256()
    for key in sorted(mapped):
        h.update(key.encode() + mapped[key].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
