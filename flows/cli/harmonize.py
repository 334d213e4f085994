"""``phraseharmony harmonize``: a trained checkpoint on a user's photo (or a folder of
them), by phrase or by mask, at the photo's own size; no Prefect."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def harmonize(
    image: Path = typer.Argument(..., exists=True, help="a photo, or a folder of photos (with --csv)"),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-k", exists=True,
                                    help="a run folder, checkpoint folder or its model.safetensors"),
    phrase: Optional[str] = typer.Option(None, "--phrase", "-p", help="the region to harmonize, in words"),
    mask: Optional[Path] = typer.Option(None, "--mask", "-m", exists=True, dir_okay=False,
                                        help="the region as a mask image of the photo's size"),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="output image (default IMAGE.harmonized.png); a folder in batch mode"),
    show: bool = typer.Option(False, help="also write input | region | output side by side (*.show.png)"),
    csv_path: Optional[Path] = typer.Option(
        None, "--csv", exists=True, dir_okay=False,
        help="batch mode: rows of (image, phrase), image relative to IMAGE"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
):
    """Harmonize the region of a photo named by --phrase (a clipseg_ht checkpoint) or
    given by --mask (any checkpoint). The result has the photo's size and detail; with
    --mask the pixels outside it are the input's."""
    from train.harmonize import HarmonizeError, Harmonizer, read_image, read_mask, side_by_side, write_image

    if image.is_dir():
        if csv_path is None:
            raise HarmonizeError(f"{image}: a folder needs --csv with rows of (image, phrase)")
        _batch(Harmonizer(checkpoint, device), image, csv_path, out or image / "harmonized", show)
        return
    if (phrase is None) == (mask is None):
        raise HarmonizeError("give --phrase TEXT or --mask MASK.png (one of them)")
    harmonizer = Harmonizer(checkpoint, device)
    photo, notes = read_image(image)
    region = read_mask(mask, photo.shape[:2]) if mask is not None else None
    result = harmonizer(photo, phrase=phrase, mask=region)
    for note in notes + result.notes:
        console.print(f"[yellow]note[/]: {note}")
    target = out or image.with_name(image.stem + ".harmonized.png")
    write_image(target, result.output)
    console.print(f"wrote {target} ({photo.shape[1]}x{photo.shape[0]})")
    if show:
        shown = target.with_name(target.stem + ".show.png")
        write_image(shown, side_by_side(photo, result.region, result.output))
        console.print(f"wrote {shown}")


def _batch(harmonizer, folder: Path, csv_path: Path, out: Path, show: bool) -> None:
    """Every (image, phrase) row of the CSV; a bad row is counted with its reason."""
    from schemas.errors import UserError
    from train.harmonize import read_image, side_by_side, write_image

    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "phrase"]:
        rows = rows[1:]
    done, skipped, examples = 0, Counter(), {}
    with Progress(TextColumn("harmonize"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("harmonize", total=len(rows))
        for i, row in enumerate(rows, start=1):
            try:
                if len(row) < 2:
                    raise UserError(f"{csv_path}: row {i} has no phrase")
                name, phrase = row[0].strip(), row[1]
                photo, _ = read_image(folder / name)
                result = harmonizer(photo, phrase=phrase)
                stem = Path(name).with_suffix("")
                if result.empty:
                    skipped["empty_region"] += 1
                    examples.setdefault("empty_region", f"row {i}: {phrase!r}")
                else:
                    write_image(out / f"{stem}.harmonized.png", result.output)
                    if show:
                        shown = side_by_side(photo, result.region, result.output)
                        write_image(out / f"{stem}.show.png", shown)
                    done += 1
            except UserError as exc:
                reason = type(exc).__name__ if not str(exc) else str(exc).split(": ", 1)[-1].split(" (")[0]
                skipped[reason] += 1
                examples.setdefault(reason, str(exc))
            bar.update(task, completed=i)
    console.print(f"[bold green]done[/]: {done} of {len(rows)} harmonized -> {out}")
    for reason, n in skipped.items():
        console.print(f"  skipped {n}: {reason} (e.g. {examples[reason]})")
