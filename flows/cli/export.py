"""``phraseharmony export-iharmony4``: a built dataset in iHarmony4's layout (no Prefect)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def export_iharmony4(
    dataset: Path = typer.Argument(..., exists=True, file_okay=False, help="a built dataset folder"),
    out: Path = typer.Argument(..., help="the iHarmony4 root to write into (the export is OUT/NAME)"),
    splits: str = typer.Option("train,test", help="our splits to export (val joins the test list)"),
    name: str = typer.Option("PhraseHarmony", help="the sub-dataset folder's name"),
):
    """Write DATASET as one iHarmony4 sub-dataset (composite_images, masks, real_images,
    NAME_train.txt, NAME_test.txt) with a JSON mapping each file to its sample_id; a rerun
    writes only what is missing or differs."""
    from tasks.publish.export_iharmony4 import export

    with Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("export", total=None)
        got = export(dataset, out, tuple(s.strip() for s in splits.split(",") if s.strip()), name,
                     progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"[bold green]done[/]: {got['rows']} rows -> {got['root']} ({got['written']} files "
                  f"written, {got['unchanged']} already there)")
