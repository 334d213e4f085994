"""What a training run needs, checked before any step: the dataset and its splits, the text
embeddings a model reads, and a checkpoint to resume from.

``check_run`` is what ``phraseharmony train`` calls before it starts Prefect, the
flow's first task and ``train`` itself: a dataset without evaluation rows, a validation
split that is not there or a resume with other settings is one line at the start, not
a traceback after the last step. Reading the plan costs the small columns of every
shard (no pixels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from schemas.train_config import TrainConfig
from tasks.captions.models import resolve_clipseg
from train import checkpoint
from train.loader import Loader
from train.mix import training_source
from train.models import phrase_model
from train.models import text_keys as model_text_keys
from train.sources import DataError, open_source


def eval_split_for(cfg: TrainConfig, splits: list[str], asked: str | None = None) -> str | None:
    """The split the flow evaluates the last checkpoint on: the asked one, else the test
    split when the dataset has one, else the validation split."""
    return asked or ("test" if "test" in splits else cfg.data.val_split)


def check_text(source, units, keys: tuple[str, ...], what: str, want_dim: int | None = None) -> int | None:
    """The CLIP width of the selected shards; an error when a text model cannot read them."""
    dim = source.text_dim(units)
    if keys and dim is None:
        raise DataError(f"{source.root}: built without captions, so no CLIP text embeddings for {what} "
                        "(build with captions.enabled=true, or use model.kind=ht)")
    if keys and want_dim is not None and dim != want_dim:
        raise DataError(f"{source.root}: its CLIP embeddings are {dim}-d, {what} was trained on {want_dim}-d "
                        "ones (a dataset captioned with the same CLIP model is needed)")
    return dim


def val_loader(cfg: TrainConfig, source, text_keys: tuple[str, ...] = (), device="cpu",
               phrases: str | None = None) -> Loader | None:
    """The validation split's loader (None with ``data.val_split: null``); a split that is
    not there, or has no rows, is an error (not a run that silently never validates)."""
    split = cfg.data.val_split
    if split is None:
        return None
    if split not in source.splits():
        raise DataError(f"{cfg.data.dir}: no split {split!r} to validate on (data.val_split; splits "
                        f"there: {', '.join(source.splits())}; null for no validation)")
    return Loader(source, split, cfg.data, cfg.batch_size, cfg.seed, train=False, text_keys=text_keys,
                  device=device, phrases=phrases)


def check_run(cfg: TrainConfig, resume: bool = False, eval_split: str | None = None) -> dict[str, Any]:
    """Everything that can be known before training; raises a one-line ``UserError``."""
    phrases = phrase_model(cfg.model)
    if phrases is not None:
        resolve_clipseg(phrases)   # missing or damaged weights: one line, before the data
    train_source, source = training_source(cfg.data), open_source(cfg.data.dir)
    keys = model_text_keys(cfg.model)
    train_rows = Loader(train_source, cfg.data.train_split, cfg.data, cfg.batch_size, cfg.seed, train=True,
                        phrases=phrases)
    text_dim = check_text(train_source, train_rows.units, keys, f"model.kind={cfg.model.kind}")
    splits = source.splits()
    val_loader(cfg, source)
    split = eval_split_for(cfg, splits, eval_split)
    if split is None:
        raise DataError(f"{cfg.data.dir}: no test split and data.val_split is null: nothing to evaluate "
                        "the trained model on (name a split with --eval-split)")
    # The flow evaluates every row of it after training.
    Loader(source, split, cfg.data, cfg.batch_size, cfg.seed, train=False, select=False)
    info = {"kind": train_source.kind, "rows": train_rows.rows, "units": len(train_rows.units),
            "manifest_hash": train_source.manifest_hash, "text_dim": text_dim, "splits": splits,
            "eval_split": split}
    resuming = resume and checkpoint.checkpoints(Path(cfg.out_dir) / "checkpoints")
    if cfg.init_from is not None and not resuming:
        from train.init_from import source_weights

        source_weights(Path(cfg.init_from), cfg.model.patch)   # missing or damaged: one line
    if resume:
        found = resumable(Path(cfg.out_dir) / "checkpoints", None)
        if found is not None:
            check_compatible(found[0], found[1], cfg, train_source.manifest_hash or "")
    return info


def resumable(ckpt_dir: Path, say: Callable[[str], None] | None) -> tuple[Path, dict[str, str], dict] | None:
    """(checkpoint, its metadata, its state) of the newest checkpoint that loads: a
    damaged newest one (a disk fault, a copy cut short) is passed over, and said so."""
    for ckpt in reversed(checkpoint.checkpoints(ckpt_dir)):
        try:
            meta = checkpoint.read_meta(ckpt)
            state = checkpoint.load_state(ckpt)
            checkpoint.load_weights(ckpt)   # (read again by the caller: a checkpoint is small)
        except checkpoint.CheckpointError as exc:
            if say:
                say(f"{exc}: passing over {ckpt.name}, trying the checkpoint before it")
            continue
        return ckpt, meta, state
    return None


def _exact(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out |= _exact(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_compatible(ckpt: Path, saved: dict[str, str], cfg: TrainConfig, manifest_hash: str) -> None:
    """Refuse to resume with another model, other data or settings that change the
    numbers, naming what differs. ``steps`` may differ: a run can be extended."""
    checkpoint.check_signature(ckpt, saved, cfg.model_signature())
    if saved.get("manifest_hash", "") != manifest_hash:
        raise checkpoint.CheckpointError(
            f"{ckpt}: trained on another version of the dataset (manifest {saved.get('manifest_hash')!r}, "
            f"now {manifest_hash!r}); resume needs the same data, or start a new out_dir")
    try:
        before = _exact(TrainConfig.model_validate_json(saved["config"]).exact_settings())
    except (KeyError, ValueError):
        raise checkpoint.CheckpointError(f"{ckpt}: its run config is missing or unreadable; "
                                         "start a new out_dir") from None
    now = _exact(cfg.exact_settings())
    diff = [f"{k}: checkpoint {json.dumps(before.get(k))}, now {json.dumps(now.get(k))}"
            for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if diff:
        raise checkpoint.CheckpointError(
            f"{ckpt}: made with other training settings ({'; '.join(diff)}); an exact resume needs "
            "them unchanged (only steps may grow), or start a new out_dir")
