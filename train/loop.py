"""The training loop: one process per device, DDP under torchrun, exact resume.

``train(cfg)`` runs ``cfg.steps`` optimizer steps over the train split epoch after epoch,
validates and checkpoints every N steps and at the end, and returns a summary. A resumed
run (``resume=True``) continues from the latest checkpoint: weights, Adam moments,
schedule, RNG and the loader's position in its epoch, so the losses that follow equal an
uninterrupted run's (exactly on the CPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from schemas.errors import UserError
from schemas.train_config import TrainConfig
from tasks.core.files import write_bytes_atomic
from train import checkpoint
from train.evaluate import autocast, pick_device, run_metrics, write_png
from train.init_from import initialise
from train.loader import Loader
from train.losses import make_loss
from train.metrics import RegionMetrics, markdown_table
from train.mix import describe_data, training_source
from train.models import batch_keys, build_model, count_parameters, phrase_model, split_output
from train.models import text_keys as model_text_keys
from train.preflight import check_compatible, check_text, resumable, val_loader
from train.region import region_loss
from train.runlog import RunLog
from train.sources import open_source


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message says at which step and batch."""


def lr_factor(cfg: TrainConfig, steps_per_epoch: int | None = None) -> Callable[[int], float]:
    """HT+'s schedule: optional linear warm-up, constant, then a linear decay from
    ``decay_start`` of the run. ``optim.schedule: epoch`` (the authors'): the factor is
    set once per epoch, 1 - max(0, e + 1 - E_c) / (E_d + 1) in epoch e for E_c constant
    and E_d decaying epochs (with 60 epochs: 30 constant, ending at 1/31); ``step``: per
    step, to 0 at the last."""
    warm, steps = cfg.optim.warmup_steps, cfg.steps
    decay_from = cfg.optim.decay_start * steps
    per_epoch = max(1, steps_per_epoch or steps)
    epochs = math.ceil(steps / per_epoch)
    constant = round(cfg.optim.decay_start * epochs)

    def factor(s: int) -> float:
        if warm and s < warm:
            return (s + 1) / warm
        if cfg.optim.schedule == "epoch":
            return 1.0 - max(0, s // per_epoch + 1 - constant) / (epochs - constant + 1)
        if s < decay_from or steps <= decay_from:
            return 1.0
        return max(0.0, (steps - s) / (steps - decay_from))

    return factor


def _distributed() -> tuple[int, int, int]:
    """(rank, world, local rank) from torchrun's environment; starts the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _any_rank(flag: bool, device: torch.device, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def train(
    cfg: TrainConfig, resume: bool = False, say: Callable[[str], None] | None = print
) -> dict[str, Any]:
    rank, world, local_rank = _distributed()
    device = pick_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    run_dir, ckpt_dir = Path(cfg.out_dir), Path(cfg.out_dir) / "checkpoints"

    # Trained on data.dir or the mix of data.sources; validated on data.dir.
    source, eval_source = training_source(cfg.data), open_source(cfg.data.dir)
    text_keys, keys, phrases = model_text_keys(cfg.model), batch_keys(cfg.model), phrase_model(cfg.model)
    loader = Loader(
        source,
        cfg.data.train_split,
        cfg.data,
        cfg.batch_size,
        cfg.seed,
        train=True,
        rank=rank,
        world=world,
        text_keys=text_keys,
        phrases=phrases,
        device=device,
        even_ranks=world > 1,
    )
    text_dim = check_text(source, loader.units, text_keys, f"model.kind={cfg.model.kind}")
    val = val_loader(cfg, eval_source, text_keys, device, phrases) if rank == 0 else None

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_model(cfg.model, cfg.data.size, text_dim).to(device)
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
    )
    schedule = lr_factor(cfg, loader.batches_in_epoch(0))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    meta = {
        "config": cfg.model_dump_json(),
        "model_signature": json.dumps(cfg.model_signature(), sort_keys=True),
        "manifest_hash": source.manifest_hash or "",
        "run_hash": cfg.run_hash(),
        "text_dim": str(text_dim or ""),
        **({"clipseg": model.clipseg.identity, "clipseg_weights": model.clipseg.weights_digest(),
            "region_threshold": "0.5"} if phrases else {}),
    }
    # The region loss trains the refinement head (CLIPSeg alone has nothing to learn).
    has_head = cfg.model.kind == "clipseg_ht" and cfg.model.region != "clipseg"
    region_weight = cfg.optim.region_weight if has_head else 0.0
    if cfg.init_from is not None:   # (a resumed run reloads its own checkpoint over this)
        meta["init_from"] = f"{cfg.init_from}@{initialise(model, cfg.init_from, say if rank == 0 else None)}"
    step, epoch, position = _restore(
        cfg, ckpt_dir, resume, model, opt, sched, device, meta, say if rank == 0 else None, schedule
    )

    net = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else model
    )
    if cfg.compile:
        net = torch.compile(net)
    loss_fn = make_loss(cfg.optim)
    log = RunLog(run_dir, cfg.steps, step, enabled=rank == 0, say=say)
    log.say(
        f"training {cfg.model.kind} ({count_parameters(model):,} parameters) on {loader.rows} rows of "
        f"{describe_data(cfg.data)} [{cfg.data.train_split}], {world} x batch {cfg.batch_size}, {device}, "
        f"{'bf16' if bf16 else 'fp32'}, from step {step} to {cfg.steps}"
    )

    def save(at: int, ep: int, pos: int) -> None:
        if phrases and model.clipseg.weights_digest() != meta["clipseg_weights"]:
            raise TrainingError(f"step {at}: the frozen CLIPSeg's weights changed (a bug: it must not train)")
        if rank == 0:
            state = {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": _rng_state(device),
                "loader": {"epoch": ep, "batch": pos},
                "step": at,
                "config": meta["config"],
                "manifest_hash": meta["manifest_hash"],
            }
            checkpoint.save(ckpt_dir, at, model.state_dict(), state, meta, cfg.keep_checkpoints)

    last_val: dict[str, Any] | None = None
    seen, t_log = 0, time.perf_counter()
    try:
        while step < cfg.steps:
            for batch in loader.epoch(epoch, position):
                net.train()
                with autocast(device, bf16):
                    extras = {k: batch[k] for k in keys}
                    out, logits = split_output(net(batch["composite"], batch["mask"], extras))
                parts = {"image_loss": loss_fn(out.float(), batch["target"], batch["mask"])}
                if region_weight:
                    parts["region_loss"] = region_loss(logits.float(), batch["mask"])
                loss = parts["image_loss"] + region_weight * parts.get("region_loss", 0.0)
                bad = not torch.isfinite(loss).item()
                if _any_rank(bad, device, world):
                    where = f"batch sample ids {batch['sample_id']}" if bad else "on another rank"
                    raise TrainingError(
                        f"step {step + 1} (epoch {epoch}, batch {batch['index']}): "
                        f"the loss is {loss.item()}, {where}"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                opt.step()
                sched.step()
                step, position = step + 1, batch["index"] + 1
                seen += len(batch["sample_id"]) * world
                if step % cfg.log_every == 0 or step == cfg.steps:
                    now = time.perf_counter()
                    log.step(
                        step,
                        {
                            "loss": loss.item(),
                            **({k: v.item() for k, v in parts.items()} if region_weight else {}),
                            "lr": sched.get_last_lr()[0],
                            "epoch": epoch,
                            "samples_per_s": seen / max(now - t_log, 1e-9),
                        },
                    )
                    seen, t_log = 0, now
                if step % cfg.val_every == 0 or step == cfg.steps:
                    last_val = _validate(cfg, model, val, device, bf16, step, log)
                    if last_val and "region_threshold" in last_val:
                        meta["region_threshold"] = str(last_val["region_threshold"])
                    if world > 1:
                        dist.barrier()
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    save(step, epoch, position)
                if step >= cfg.steps:
                    break
            else:
                report = loader.take_skip_report()
                if report["counts"]:
                    log.say(f"epoch {epoch}: skipped rows {report['counts']} (e.g. {report['examples']})")
                log.record("epoch", step, {"epoch": epoch, "skips": report})
                epoch, position = epoch + 1, 0
    finally:
        log.close()
    summary: dict[str, Any] = {}
    if world > 1:  # every rank's weights, to show DDP kept them in step
        digests: list[str | None] = [None] * world
        dist.all_gather_object(digests, _weights_digest(model))
        summary["weights_by_rank"] = digests
    return summary | {
        "run_dir": str(run_dir),
        "steps": step,
        "checkpoint": str(checkpoint.step_dir(ckpt_dir, step)),
        "validation": last_val,
        "log": str(log.path),
    }


def _weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _restore(
    cfg: TrainConfig, ckpt_dir: Path, resume: bool, model, opt, sched, device, meta: dict[str, str], say,
    schedule: Callable[[int], float],
) -> tuple[int, int, int]:
    """(step, epoch, batch position) to start from."""
    if not resume:
        if checkpoint.checkpoints(ckpt_dir):
            raise UserError(
                f"{ckpt_dir}: this run folder already has checkpoints; continue it with "
                "--resume or choose another out_dir"
            )
        return 0, 0, 0
    found = resumable(ckpt_dir, say)
    if found is None:
        if checkpoint.checkpoints(ckpt_dir):
            raise checkpoint.CheckpointError(f"{ckpt_dir}: no checkpoint here loads; start a new out_dir")
        if say:
            say(f"{ckpt_dir}: no checkpoint yet, starting from step 0")
        return 0, 0, 0
    ckpt, saved, state = found
    check_compatible(ckpt, saved, cfg, meta["manifest_hash"])
    step = int(state["step"])
    if step > cfg.steps:
        raise checkpoint.CheckpointError(f"{ckpt}: already at step {step}, past steps={cfg.steps}")
    model.load_state_dict(checkpoint.load_weights(ckpt))
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    before = json.loads(saved["config"]).get("steps")
    if say:
        say(
            f"resuming from {ckpt} (step {step}, epoch {state['loader']['epoch']}, "
            f"batch {state['loader']['batch']})"
        )
    if before != cfg.steps:
        # An extended (or shortened) run: the schedule is HT+'s for the new total, taken
        # from the step the run stands at.
        factor = schedule(step)
        for group, base in zip(opt.param_groups, sched.base_lrs):
            group["lr"] = base * factor
        sched._last_lr = [g["lr"] for g in opt.param_groups]
        if say:
            say(f"steps {before} -> {cfg.steps}: learning-rate schedule recomputed for {cfg.steps} steps; "
                f"at step {step} its factor is {factor:.4g}")
    return step, int(state["loader"]["epoch"]), int(state["loader"]["batch"])


def _validate(
    cfg: TrainConfig, model, val: Loader | None, device, bf16: bool, step: int, log: RunLog
) -> dict[str, Any] | None:
    if val is None:
        return None
    model.eval()
    keys = batch_keys(cfg.model)
    regions = RegionMetrics() if cfg.model.kind == "clipseg_ht" else None

    def predict(batch):
        with autocast(device, bf16):
            return model(batch["composite"], batch["mask"], {k: batch[k] for k in keys})

    model_m, input_m, grid = run_metrics(predict, val, cfg.val_batches, cfg.grid_samples, regions,
                                         blend_by_region=cfg.model.region != "gt")
    folder = Path(cfg.out_dir) / "val"
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(
        folder / f"step-{step:08d}.md", markdown_table(model_m, input_m, f"step {step}").encode()
    )
    write_png(folder / f"step-{step:08d}.png", grid)
    overall = {k: v for k, v in model_m["overall"].items() if not (isinstance(v, float) and math.isnan(v))}
    log.record("val", step, {**overall, "input": input_m["overall"]})
    log.say(
        f"step {step} validation: fMSE {model_m['overall']['fmse']:.1f} "
        f"(input {input_m['overall']['fmse']:.1f}), PSNR {model_m['overall']['psnr']:.2f}"
    )
    out = {
        "overall": model_m["overall"],
        "input_overall": input_m["overall"],
        "grid": str(folder / f"step-{step:08d}.png"),
        "table": str(folder / f"step-{step:08d}.md"),
    }
    if regions is not None:   # the threshold with the best mean IoU, kept in the checkpoint
        out["region_threshold"] = regions.best_threshold()
        out["region"] = regions.summary(out["region_threshold"])
        log.record("val_region", step, {"threshold": out["region_threshold"], **out["region"]["overall"]})
        log.say(f"step {step} region: IoU {out['region']['overall']['iou']:.3f} at {out['region_threshold']}")
    return out
