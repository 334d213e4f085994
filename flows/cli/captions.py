"""``phraseharmony models check|download`` and ``phraseharmony captions``: the captioning
models, and the captions stage on its own (for a GPU box), without Prefect."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

models_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="The models a build (BLIP, CLIP) or a training run (CLIPSeg) needs: "
                              "check they are here, or fetch them.")
console = Console()
CONFIG = typer.Option(Path("configs/vgphrasecut.yaml"), "--config", "-c", exists=True, dir_okay=False,
                      help="a build config (its captions.blip_model / clip_model) or a training config "
                           "(its model.clipseg)")


def _train_config(config: Path, sets: list[str]):
    """The training config at ``config`` (it has a ``model`` section), else None."""
    import yaml

    from schemas.train_config import load_train_config

    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return None   # the build config loader says what is wrong with it
    return load_train_config(config, sets) if isinstance(data, dict) and "model" in data else None


def _check_clipseg(cfg, load: bool) -> None:
    from tasks.captions.models import ModelMissing, resolve_clipseg

    if cfg.model.kind != "clipseg_ht":
        console.print(f"model.kind={cfg.model.kind} needs no model besides its own")
        return
    try:
        source = resolve_clipseg(cfg.model.clipseg)
    except ModelMissing as exc:
        console.print(f"[red]missing[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"[green]present[/] CLIPSeg {cfg.model.clipseg} ({source.identity})")
    if load:
        from train.region import FrozenClipSeg

        n = sum(p.numel() for p in FrozenClipSeg(cfg.model.clipseg).net.parameters())
        console.print(f"loaded: CLIPSeg {n / 1e6:.1f}M parameters (frozen)")
SET = typer.Option([], "--set", help="override, e.g. captions.clip_model=ViT-B-32/laion2b_s34b_b79k")


@models_app.command()
def check(config: Path = CONFIG, set_: list[str] = SET,
          load: bool = typer.Option(True, help="also load each model and report its size")):
    """Say which configured models are present, and load each."""
    from schemas.config import load_config
    from tasks.captions.models import ModelMissing, resolve_blip, resolve_clip

    train_cfg = _train_config(config, list(set_))
    if train_cfg is not None:
        _check_clipseg(train_cfg, load)
        return
    c = load_config(config, list(set_)).captions
    missing = 0
    for kind, resolve, spec in (("BLIP", resolve_blip, c.blip_model), ("CLIP", resolve_clip, c.clip_model)):
        try:
            source = resolve(spec)
            console.print(f"[green]present[/] {kind} {spec} ({source.identity})")
        except ModelMissing as exc:
            missing += 1
            console.print(f"[red]missing[/] {exc}")
    if missing:
        raise typer.Exit(1)
    if load:
        from tasks.captions.engine import load_models

        m = load_models(c.blip_model, c.clip_model, c.device, c.precision)
        blip_n = sum(p.numel() for p in m.blip.parameters())
        clip_n = sum(p.numel() for p in m.clip.parameters())
        console.print(f"loaded on {m.precision_kind}: BLIP {blip_n / 1e6:.0f}M parameters, "
                      f"CLIP {clip_n / 1e6:.0f}M parameters, {m.embed_dim}-d embeddings")


@models_app.command()
def download(config: Path = CONFIG, set_: list[str] = SET):
    """Fetch the configured models into the Hugging Face cache (needs the internet).
    Local folders (a BLIP save_pretrained folder, local-dir:) are left as they are."""
    from schemas.config import load_config
    from tasks.captions.models import download_hf, download_models

    train_cfg = _train_config(config, list(set_))
    if train_cfg is not None:
        if train_cfg.model.kind == "clipseg_ht":
            console.print(download_hf(train_cfg.model.clipseg, "CLIPSeg"))
        return
    c = load_config(config, list(set_)).captions
    for line in download_models(c):
        console.print(line)


def captions(config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False,
                                         help="YAML run config (see configs/)"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder"),
             set_: list[str] = SET):
    """Run the captions stage alone (BLIP candidates, CLIP re-rank, embeddings) over the
    images already acquired in OUT, with a progress bar; no Prefect. A later build joins
    the parts it made."""
    from schemas.config import load_config
    from tasks.acquire.annotations import ingest, read_annotation_table
    from tasks.acquire.ledger import read_ledger
    from tasks.captions.models import captions_enabled
    from tasks.captions.plan import caption_extras, part_phrases, phrases_by_image
    from tasks.captions.stage import caption_part, model_identity
    from tasks.core.files import exclusive, still_owner
    from tasks.core.shard_plan import plan_shards
    from tasks.publish.build_state import is_ready

    cfg = load_config(config, [*set_, "captions.enabled=true"], out)
    cfg = cfg.model_copy(update={"out_dir": cfg.out_dir.resolve()})
    captions_enabled(cfg)   # missing weights: one line, before any work
    with exclusive(cfg.out_dir) as token:
        ingest(cfg)
        ledger = read_ledger(cfg.images_dir)
        table = read_annotation_table(cfg.annotations_path)
        specs = [s for s in plan_shards(table, cfg, ledger, "") if is_ready(s, ledger)]
        ident = model_identity(cfg)
        _, todo = caption_extras(cfg, specs, ledger, table, ident)
        by_image = phrases_by_image(table)
        total = sum(len(s.image_ids) for s in todo)
        console.print(f"{len(todo)} of {len(specs)} parts to compute ({total} photos, {ident[2]})")
        started, before = time.monotonic(), 0
        with Progress(TextColumn("captions"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]} photos/s"), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("captions", total=total, rate="–")
            for spec in todo:
                def progress(done: int, base=before) -> None:
                    rate = (base + done) / max(time.monotonic() - started, 1e-9)
                    bar.update(task, completed=base + done, rate=f"{rate:.1f}")
                caption_part(cfg, spec.split, spec.index, list(spec.image_ids),
                             {i: ledger[i] for i in spec.image_ids if i in ledger},
                             part_phrases(by_image, spec.image_ids),
                             may_publish=lambda: still_owner(cfg.out_dir, token), progress=progress,
                             ident=ident)
                before += len(spec.image_ids)
                bar.update(task, completed=before)
    console.print(f"[bold green]done[/]: {len(todo)} parts in {time.monotonic() - started:.1f} s "
                  f"-> {cfg.out_dir / 'captions'}")
