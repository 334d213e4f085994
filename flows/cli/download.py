"""``phraseharmony download``: fetch VGPhraseCut's images without building anything.

The same acquisition stage the flow runs, driven from the command line with a rich
progress bar. Safe to interrupt and rerun: the ledger and partial files resume it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def download(images: Optional[Path] = typer.Option(
                 None, "--images", exists=True, dir_okay=False,
                 help="image_data_split.json (default: the config's, fetched if missing)"),
             out: Path = typer.Option(..., "--out", "-o", help="output folder (images go to OUT/images)"),
             config: Optional[Path] = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                                   help="run config for the images.* settings"),
             source: Optional[str] = typer.Option(
                 None, help="http | local | zip (default: the config's, else http)"),
             splits: Optional[str] = typer.Option(None, help="comma-separated splits (default all)"),
             set_: list[str] = typer.Option([], "--set", help="override, e.g. images.workers=64"),
             retry_failed: bool = typer.Option(False, help="ask again for images refused for good")):
    """Download (or copy) every record's image into OUT/images/<image_id>.jpg."""
    from schemas.config import load_config
    from tasks.acquire.annotations import iter_image_records, iter_json_array
    from tasks.acquire.downloader import acquire_records
    from tasks.acquire.ledger import INVALID, LedgerWriter, invalid_records
    from tasks.core.files import exclusive

    if source is None and config is None:
        source = "http"
    overrides = [f"images.retry_failed={retry_failed}", *set_]
    if source is not None:
        overrides.insert(0, f"images.source={source}")
    cfg = load_config(config, overrides, out)
    if images is None:
        if config is None:
            raise typer.BadParameter("give --images, or a --config whose annotations say where "
                                     "image_data_split.json is (or comes from)")
        from tasks.acquire.annotation_fetch import ensure_files

        ensure_files(cfg.annotations, ["image_data_split.json"], cfg.images)
        images = cfg.annotations.dir / "image_data_split.json"
    wanted = splits.split(",") if splits else None
    total = sum(1 for _ in iter_json_array(images))  # a cheap streaming pass, for the bar
    rejected: list[tuple[str, str]] = []
    records = iter_image_records(images, wanted, rejected)
    started = time.monotonic()
    with exclusive(cfg.out_dir), Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("images", total=total, rate="")

        def progress(done: int, counts: Counter) -> None:
            rate = done / max(time.monotonic() - started, 1e-9)
            bar.update(task, completed=done + len(rejected), rate=f"{rate:.0f}/s",
                       description=" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "images")

        counts = acquire_records(cfg, records, progress)
        bar.update(task, completed=total)
        # Bad records are counted skips in the ledger, once each.
        known = invalid_records(cfg.images_dir)
        with LedgerWriter(cfg.images_dir) as writer:
            for where, reason in rejected:
                if known.get(where, {}).get("error") != reason:
                    writer.append({"record": where, "status": INVALID, "error": reason,
                                   "time": time.time()})
    if rejected:
        counts["invalid_record"] = len(rejected)
    console.print(f"[bold]{cfg.images_dir}[/]: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    waiting = counts.get("retry", 0)
    if waiting:
        console.print(f"{waiting} image(s) failed transiently and will be retried by the next run")
