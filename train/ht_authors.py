"""The authors' HT+ checkpoints (zhenglab/HarmonyTransformer's ``latest_net_G.pth``) in
and out of this project's layout.

Their ``HTGenerator``: ``patch_to_embedding.1`` (a Linear over 4x4 patches flattened in
the order (p1 p2 c), einops' ``b c (h p1) (w p2) -> b (h w) (p1 p2 c)``),
``transformer_enc.encoder.layers.N.{self_attn (nn.MultiheadAttention), linear1, linear2,
norm1, norm2}``, ``dec.0`` (the ConvTranspose2d). Ours flattens a patch as (c p1 p2), so
the embedding's columns are permuted; every other tensor maps one to one.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from train.checkpoint import CheckpointError

_LAYER = re.compile(r"transformer_enc\.encoder\.layers\.(\d+)\.(.+)")
_INSIDE = {  # theirs (inside a layer) -> ours
    "self_attn.in_proj_weight": "attn.in_proj.weight", "self_attn.in_proj_bias": "attn.in_proj.bias",
    "self_attn.out_proj.weight": "attn.out_proj.weight", "self_attn.out_proj.bias": "attn.out_proj.bias",
    "linear1.weight": "ffn.0.weight", "linear1.bias": "ffn.0.bias",
    "linear2.weight": "ffn.2.weight", "linear2.bias": "ffn.2.bias",
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
}
_OUTSIDE = {
    "patch_to_embedding.1.weight": "patch_embed.weight", "patch_to_embedding.1.bias": "patch_embed.bias",
    "dec.0.weight": "head.weight", "dec.0.bias": "head.bias",
}


def is_authors(state: dict) -> bool:
    return any(k.removeprefix("module.").startswith("patch_to_embedding.") for k in state)


def _order(patch: int, channels: int) -> torch.Tensor:
    """For each of our columns j = c*p*p + p1*p + p2, the column (p1*p + p2)*C + c of theirs."""
    c, p1, p2 = (g.reshape(-1) for g in torch.meshgrid(torch.arange(channels), torch.arange(patch),
                                                        torch.arange(patch), indexing="ij"))
    return (p1 * patch + p2) * channels + c


def from_authors(state: dict, patch: int = 4) -> dict[str, torch.Tensor]:
    """Their state dict (a ``module.`` prefix from DDP dropped) in our names and layout."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        m = _LAYER.fullmatch(key)
        if m and m.group(2) in _INSIDE:
            out[f"layers.{m.group(1)}.{_INSIDE[m.group(2)]}"] = value
        elif key in _OUTSIDE:
            out[_OUTSIDE[key]] = value
        else:
            raise CheckpointError(f"the authors' checkpoint has a tensor {key!r} HT+ does not have")
    w = out.get("patch_embed.weight")
    if w is not None:
        channels = w.shape[1] // (patch * patch)
        out["patch_embed.weight"] = w[:, _order(patch, channels)]
    return out


def to_authors(state: dict[str, torch.Tensor], patch: int = 4) -> dict[str, torch.Tensor]:
    """Ours in their names and layout (what their ``HTGenerator.load_state_dict`` takes)."""
    inside = {v: k for k, v in _INSIDE.items()}
    outside = {v: k for k, v in _OUTSIDE.items()}
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        if m:
            out[f"transformer_enc.encoder.layers.{m.group(1)}.{inside[m.group(2)]}"] = value
        elif key in outside:
            name = outside[key]
            if key == "patch_embed.weight":
                channels = value.shape[1] // (patch * patch)
                value = value[:, _order(patch, channels).argsort()]
            out[name] = value
    return out


def load_authors_file(path: Path) -> dict[str, torch.Tensor]:
    """``latest_net_G.pth`` (a plain state dict; torch.load with weights only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be loaded ({exc})") from None
    if not isinstance(state, dict) or not is_authors(state):
        raise CheckpointError(f"{path}: not an HT+ state dict of the authors' code (no patch_to_embedding)")
    return state
