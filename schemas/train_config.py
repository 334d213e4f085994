"""The one typed training config (``configs/train-*.yaml``), every tunable with its reason.

Defaults are HT+'s recipe (Guo et al., TPAMI 2022; ``../shared/TRAINING.md``) as the
authors' code runs it: 9 post-norm layers of width 256 over 4x4 patches on the composite
in [0, 1], the raw tanh out, DETR's sine positions, their initialisation; Adam 1e-4 with
betas (0.5, 0.999), 100 x L1 on [0, 1], batch 8 (the paper's; their code's default is
4), a constant learning rate for half the epochs then a linear decay set per epoch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from schemas.config import _Strict, load_model


class MixPart(_Strict):
    # One dataset of a training mix: a build or an iHarmony4 root.
    dir: Path
    # Its share of each epoch's rows (weights are normalised); a share above the
    # dataset's own size repeats its rows, one below takes another subset every epoch.
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)
    # Its rows to train on (empty: data.recipes).
    recipes: tuple[str, ...] = ()


class TrainData(_Strict):
    # A dataset folder built by `phraseharmony build` (it has _manifest.json) or an
    # iHarmony4 root (it has IHD_train.txt): both go through the same loader. With
    # `sources`, the dataset validated and evaluated on.
    dir: Path = Path("out/sample")
    # Train on several datasets at once, each drawn at its weight (deterministic per
    # seed and epoch), e.g. our shards and iHarmony4 when fine-tuning. Empty: `dir` alone.
    sources: tuple[MixPart, ...] = ()
    # Rows in an epoch of the mix (null: the sources' rows together). The schedule counts
    # epochs, so set it when one source is far bigger than the one to learn.
    epoch_rows: int | None = Field(None, ge=1)
    train_split: str = "train"
    # Validation split (it must exist in the dataset); iHarmony4 has none, use "test"
    # there, or null for no validation.
    val_split: str | None = "val"
    # Rows to train on: recipes (empty = all; for iHarmony4 the sub-datasets, e.g.
    # HCOCO) and a foreground-ratio range (our shards' fg_ratio column).
    recipes: tuple[str, ...] = ()
    fg_ratio: tuple[float, float] = (0.0, 1.0)
    # Training resolution; our shards are stored at it (synthesis.size), so workers only
    # decode. Other sizes (iHarmony4's photos) are resized with area interpolation.
    size: int = Field(256, ge=16, le=2048)
    # Decoding processes per rank: one core decodes ~680 triples/s at 256^2 (TRAINING.md).
    workers: int = Field(2, ge=0, le=128)
    # Rows held for shuffling within a worker, on top of the per-epoch shuffle of
    # (file, row group) units; ~60 KB each at 256^2.
    shuffle_buffer: int = Field(512, ge=1)
    # HT's only augmentation: a horizontal flip applied to composite, target and mask.
    flip: bool = True

    @model_validator(mode="after")
    def _range(self) -> "TrainData":
        lo, hi = self.fg_ratio
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError("fg_ratio must be [low, high] with 0 <= low < high <= 1")
        if self.sources and "dir" not in self.model_fields_set:
            raise ValueError("with sources (the training mix) set dir too: the dataset to validate and "
                             "evaluate on")
        if self.epoch_rows is not None and not self.sources:
            raise ValueError("epoch_rows sets the length of a mix's epoch: it needs sources")
        return self


class ModelConfig(_Strict):
    # "ht": HT+; "ht_text": HT+ with every layer conditioned on the CLIP text embedding
    # of the phrase (and the caption's with text=phrase+caption) by zero-initialised
    # adaptive LayerNorm, so it starts as exactly HT+; "clipseg_ht": harmonize the
    # region a phrase names, with no mask given (frozen CLIPSeg + refinement head + HT+).
    kind: Literal["ht", "ht_text", "clipseg_ht"] = "ht"
    # HT+ at the paper's size: 4,772,867 parameters.
    dim: int = Field(256, ge=8)
    depth: int = Field(9, ge=1)
    heads: int = Field(2, ge=1)
    ffn: int = Field(512, ge=8)
    patch: int = Field(4, ge=1, le=32)
    # The CLIP embeddings that condition every layer (adaLN): null is "phrase" for
    # ht_text and none for clipseg_ht (which needs no clip_* column: any build trains it).
    text: Literal["phrase", "phrase+caption"] | None = None
    # clipseg_ht: HT+'s mask channel is the annotated mask ("gt", the upper bound), CLIPSeg's
    # soft region ("clipseg") or the refinement head's ("refined"): one key to compare them.
    region: Literal["gt", "clipseg", "refined"] = "refined"
    # clipseg_ht: the frozen CLIPSeg, an HF id[@revision] or a save_pretrained folder
    # (found locally; `phraseharmony models download --config <train config>` fetches it).
    clipseg: str = "CIDAS/clipseg-rd64-refined"
    # clipseg_ht: the refinement head's width (~130k parameters at 32).
    head_width: int = Field(32, ge=4, le=256)
    # "sdpa": F.scaled_dot_product_attention (fused kernels never build the N x N
    # weights); "naive": softmax(QK^T)V materialised, as HT's reference code does (the
    # benchmark's baseline).
    attention: Literal["sdpa", "naive"] = "sdpa"
    # HT+ as its authors' code builds it (zhenglab/HarmonyTransformer, TRAINING.md) is the
    # default of every setting below; the other values are the choices this project made
    # before it read their code, kept to compare (docs/benchmarks.md measures them).
    # The composite enters in [0, 1] ("unit", theirs) or mapped to [-1, 1] ("symmetric").
    input_range: Literal["unit", "symmetric"] = "unit"
    # The output is the raw tanh, trained against targets in [0, 1] and clipped when read
    # ("tanh", theirs), or (tanh + 1) / 2, always in [0, 1] ("unit_tanh").
    output: Literal["tanh", "unit_tanh"] = "tanh"
    # DETR's sine encoding on the patch grid's positions 1..n as they are ("cumulative",
    # theirs) or scaled to (0, 2*pi] ("normalized").
    positions: Literal["cumulative", "normalized"] = "cumulative"
    # normal(0, 0.02) on every Linear and convolution, with the packed attention in-
    # projection left at PyTorch's xavier-uniform ("authors": their init touches modules
    # named Conv or Linear, and nn.MultiheadAttention is neither), or normal(0, 0.02) on
    # it too ("normal").
    init: Literal["authors", "normal"] = "authors"

    @model_validator(mode="after")
    def _heads(self) -> "ModelConfig":
        if self.dim % self.heads or (self.dim // 2) % 2:
            raise ValueError("dim must divide by heads, and dim/2 by 2 (sine encoding)")
        return self


class OptimConfig(_Strict):
    # HT+: Adam, lr 1e-4, betas (0.5, 0.999), no weight decay. (Every float is finite:
    # an lr of inf would be accepted and fail as a NaN loss at the first step.)
    model_config = ConfigDict(_Strict.model_config, allow_inf_nan=False)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    # Linear warm-up steps (HT has none; helps larger batches).
    warmup_steps: int = Field(0, ge=0)
    # HT+: constant for 30 of 60 epochs, then linear to 0: the decay starts at this
    # fraction of `steps`.
    decay_start: float = Field(0.5, ge=0.0, le=1.0)
    # Max gradient norm (None: no clipping, as HT). A guard against rare large batches.
    grad_clip: float | None = Field(None, gt=0)
    # "l1": HT's 100 x L1 over the whole image; "fn_mse": iSSAM's foreground-normalised
    # MSE with A_min = fn_mse_min_area pixels.
    loss: Literal["l1", "fn_mse"] = "l1"
    l1_weight: float = Field(100.0, gt=0)
    # The L1 on images in [0, 1] ("unit": the authors' L1Loss(harmonized, real)) or on
    # HT's [-1, 1] scale ("symmetric": twice the former, this project's earlier loss).
    l1_range: Literal["unit", "symmetric"] = "unit"
    # When the learning rate decays: "epoch" (theirs: the factor 1 - max(0, e + 1 - E_c) /
    # (E_d + 1) set once per epoch e, E_c constant epochs, E_d decaying ones, ending at
    # 1 / (E_d + 1)) or "step" (linear per step to exactly 0 at the last step).
    schedule: Literal["epoch", "step"] = "epoch"
    # clipseg_ht: weight of the region loss (BCE + Dice against the annotated mask) beside
    # the image's 100 x L1. The region loss is the head's main teacher (BCE + Dice 2.6 ->
    # 1.9 over 20 steps on the sample); the image loss (25-50 there with the tiny model,
    # ~2-5 for a trained HT+) reaches the head only through HT+'s mask channel, and does
    # not pull it toward an outline whose colours happen to match. Not tuned on a full run.
    region_weight: float = Field(1.0, ge=0)
    fn_mse_min_area: float = Field(100.0, gt=0)

    @model_validator(mode="after")
    def _betas(self) -> "OptimConfig":
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1) (Adam's moment decays), got {list(self.betas)}")
        return self


class TrainConfig(_Strict):
    name: str = "sample"
    seed: int = 0
    # The run folder: checkpoints/, log.jsonl, val/, eval/.
    out_dir: Path = Path("runs/sample")
    # Optimizer steps in all (epochs follow from the dataset's size and the batch).
    steps: int = Field(1000, ge=1)
    # Start from another run's weights (a run or checkpoint folder, or the authors'
    # latest_net_G.pth) with a fresh optimizer and schedule: pretrain on PhraseHarmony,
    # fine-tune on iHarmony4 (configs/finetune-iharmony4.yaml). null: from scratch.
    init_from: Path | None = None
    # Per rank (HT+: 8 on one GPU).
    batch_size: int = Field(8, ge=1)
    data: TrainData = TrainData()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    # "auto": CUDA when present, else CPU.
    device: str = "auto"
    # "auto": bf16 autocast on CUDA, fp32 on CPU (bf16 is ~2.7x slower on this CPU).
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # torch.compile the model: faster steps on a GPU after a 1-3 minute first compile.
    compile: bool = False
    log_every: int = Field(10, ge=1)
    val_every: int = Field(500, ge=1)
    # Validation batches per validation (None: the whole split).
    val_batches: int | None = Field(50, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    # Checkpoints kept (oldest removed first); the last one is always kept.
    keep_checkpoints: int = Field(3, ge=1)
    # Samples in the validation/evaluation grid PNG.
    grid_samples: int = Field(8, ge=1, le=64)

    @model_validator(mode="after")
    def _size(self) -> "TrainConfig":
        if self.data.size % self.model.patch:
            raise ValueError(f"data.size {self.data.size} must be a multiple of model.patch "
                             f"{self.model.patch} (the model cuts the image into patches)")
        return self

    def model_signature(self) -> dict[str, Any]:
        """What decides the weights' shapes and meaning: a checkpoint must match it (the
        keys a kind does not read are left out)."""
        kind = self.model.kind
        unused = {"attention"}
        if kind != "clipseg_ht":
            unused |= {"region", "clipseg", "head_width"}
        if kind == "ht":
            unused.add("text")
        sig = self.model.model_dump(mode="json", exclude=unused)
        if kind == "ht_text":
            sig["text"] = self.model.text or "phrase"
        return sig | {"size": self.data.size}

    def exact_settings(self) -> dict[str, Any]:
        """Every setting that decides the numbers of a run's steps: a resume must keep
        them (paths, worker counts, logging and the total of ``steps`` excluded: a run
        may be extended)."""
        data = self.model_dump(
            mode="json",
            exclude={
                "out_dir",
                "name",
                "steps",
                "device",
                "compile",
                "log_every",
                "val_every",
                "val_batches",
                "checkpoint_every",
                "keep_checkpoints",
                "grid_samples",
            },
        )
        data["data"].pop("dir")
        data["data"].pop("workers")
        return data

    def run_hash(self) -> str:
        blob = json.dumps(self.exact_settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_train_config(
    path: str | Path | None = None, overrides: list[str] | dict | None = None
) -> TrainConfig:
    """Read a training YAML with ``key=value`` overrides. Relative paths (data.dir,
    out_dir) are taken from the working directory, as the build's out_dir is."""
    return load_model(TrainConfig, path, overrides)
