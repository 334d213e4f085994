"""``phraseharmony train`` (the train-harmonizer flow) and ``phraseharmony evaluate``
(metrics of a checkpoint on a split; no Prefect needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def train(
    config: Path = typer.Option(
        ..., "--config", "-c", exists=True, dir_okay=False, help="YAML training config (configs/train-*.yaml)"
    ),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. data.dir=out/sample or steps=200"),
    resume: bool = typer.Option(False, help="continue from the latest checkpoint in out_dir"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", exists=True,
                                             help="start from this run's (or the authors') weights"),
    eval_split: Optional[str] = typer.Option(None, help="split to evaluate on (default: test, else val)"),
):
    """Train a harmonizer on a built dataset, then evaluate it (the train-harmonizer flow,
    against PREFECT_API_URL or a temporary local server). Several GPUs: torchrun
    --nproc_per_node N -m train --config C."""
    from flows.local_server import prefect_api
    from schemas.train_config import load_train_config
    from train.preflight import check_run

    set_ = [*set_, *([f"init_from={init_from}"] if init_from else [])]
    # A bad config, dataset or resume is one line, before Prefect starts.
    check_run(load_train_config(config, list(set_)), resume, eval_split)
    with prefect_api():
        from flows.train_harmonizer import train_harmonizer

        state = train_harmonizer(
            config=str(config), overrides=list(set_), resume=resume, eval_split=eval_split, return_state=True
        )
    result = state.result()  # raises what failed the run (a user error prints as one line)
    ev = result["evaluation"]
    console.print(
        f"[bold green]done[/]: {result['train']['steps']} steps; checkpoint {result['train']['checkpoint']}"
    )
    console.print(
        f"  {ev['out']}: fMSE {ev['overall']['fmse']:.2f} (input {ev['input_overall']['fmse']:.2f}), "
        f"PSNR {ev['overall']['psnr']:.2f} (input {ev['input_overall']['psnr']:.2f})"
    )


def evaluate(
    checkpoint: Path = typer.Argument(
        ..., exists=True, help="a checkpoint folder, its model.safetensors, or a run folder"
    ),
    data: Path = typer.Option(..., "--data", "-d", help="a built dataset folder or an iHarmony4 root"),
    split: str = typer.Option("test", help="split to evaluate"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="report folder (default: CKPT/eval-SPLIT)"),
    batch_size: int = typer.Option(16, min=1),
    workers: int = typer.Option(2, min=0, help="decoding processes"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
    protocol: str = typer.Option("clean", help="clean (ours) or ht (the authors' evaluation, reproduced)"),
    exclude_overlap: bool = typer.Option(
        False, "--exclude-overlap", help="on iHarmony4: leave out test photos the training data held"),
    train_data: list[Path] = typer.Option(
        [], "--train-data", help="the builds trained on, for --exclude-overlap (default: the checkpoint's)"),
):
    """Metrics of a checkpoint (ours, or the authors' latest_net_G.pth) on every row of a
    split: metrics.json, metrics.md (beside the input composites' row; on iHarmony4 the
    published rows too) and grid.png."""
    from train.evaluate import evaluate as run

    result = run(checkpoint, data, split, out, batch_size=batch_size, workers=workers, device=device,
                 protocol=protocol, exclude_overlap=exclude_overlap, train_data=train_data or None)
    console.print(Path(result["metrics_md"]).read_text())
    if result["skips"]["counts"]:
        console.print(f"[yellow]skipped rows[/]: {json.dumps(result['skips']['counts'])}")
    console.print(f"wrote {result['out']}")
