"""Checkpoints: ``checkpoints/step-NNNNNNNN/`` holding ``model.safetensors`` (weights, with
the run config and the dataset's manifest hash in its metadata) and ``state.pt``
(optimizer, scheduler, RNG, loader position; plain tensors and numbers, so it loads with
``weights_only=True``). A checkpoint is written into a hidden temporary folder and renamed
into place, so a killed run never leaves a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from schemas.errors import UserError

WEIGHTS, STATE = "model.safetensors", "state.pt"


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used here; the message names it and the difference."""


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(
    root: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    meta: dict[str, str],
    keep: int,
) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in weights.items()},
        str(tmp / WEIGHTS),
        metadata={**meta, "step": str(step)},
    )
    torch.save(state, tmp / STATE)
    for f in (WEIGHTS, STATE):
        with open(tmp / f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / WEIGHTS).exists() and (p / STATE).exists())


AUTHORS_WEIGHTS = "latest_net_G.pth"


def resolve(path: Path) -> Path:
    """A checkpoint folder, its ``model.safetensors``, a run folder or its
    ``checkpoints/`` folder -> the checkpoint folder (the latest one for a run). The
    authors' HT+ (``latest_net_G.pth``, or a folder holding it) -> that file."""
    path = Path(path)
    if path.is_file() and path.name == WEIGHTS:
        return path.parent
    if path.is_file() and path.suffix in (".pth", ".pt"):
        return path
    if (path / AUTHORS_WEIGHTS).is_file() and not (path / WEIGHTS).exists():
        return path / AUTHORS_WEIGHTS
    if (path / WEIGHTS).exists():
        return path
    found = checkpoints(path / "checkpoints") or checkpoints(path)
    if not found:
        raise CheckpointError(f"{path}: no checkpoint here (expected {WEIGHTS}, checkpoints/step-*/ or the "
                              f"authors' {AUTHORS_WEIGHTS})")
    return found[-1]


def read_meta(ckpt: Path) -> dict[str, str]:
    try:
        with safe_open(str(Path(ckpt) / WEIGHTS), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{Path(ckpt) / WEIGHTS}: not a readable safetensors file ({exc})") from None


def load_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(Path(ckpt) / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{Path(ckpt) / WEIGHTS}: cannot be loaded ({exc})") from None


def load_state(ckpt: Path) -> dict[str, Any]:
    try:
        return torch.load(Path(ckpt) / STATE, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"{Path(ckpt) / STATE}: cannot be loaded ({exc})") from None


def check_signature(ckpt: Path, meta: dict[str, str], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint of another model config, naming what differs."""
    try:
        found = json.loads(meta["model_signature"])
    except (KeyError, ValueError):
        raise CheckpointError(
            f"{ckpt}: no model signature in {WEIGHTS}; not a PhraseHarmony checkpoint"
        ) from None
    diff = [
        f"{k}: checkpoint {found.get(k)!r}, config {expected.get(k)!r}"
        for k in sorted(set(found) | set(expected))
        if found.get(k) != expected.get(k)
    ]
    if diff:
        raise CheckpointError(f"{ckpt}: made for another model config ({'; '.join(diff)})")
