"""``phraseharmony`` command line: build, download, inspect, preview, luts, models, captions,
train, evaluate, harmonize, export-iharmony4."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from flows.cli.captions import captions, models_app
from flows.cli.download import download
from flows.cli.export import export_iharmony4
from flows.cli.harmonize import harmonize
from flows.cli.luts import app as luts_app
from flows.cli.train import evaluate, train

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build and inspect PhraseHarmony datasets.")
console = Console()


class _ShardProgress(logging.Handler):
    """Moves a rich progress bar on the flow's per-shard log records."""

    def __init__(self, progress: Progress, task_id) -> None:
        super().__init__(logging.INFO)
        self.progress, self.task_id = progress, task_id

    def emit(self, record: logging.LogRecord) -> None:
        done_total = getattr(record, "shard_progress", None)
        if done_total:
            self.progress.update(self.task_id, completed=done_total[0], total=done_total[1])


@app.command()
def build(config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False,
                                      help="YAML run config (see configs/)"),
          out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder"),
          set_: list[str] = typer.Option([], "--set", help="override, e.g. runner.kind=processes"),
          verify: bool = typer.Option(False, help="re-hash finished shards before trusting them"),
          dry_run: bool = typer.Option(False, "--dry-run",
                                       help="ingest the annotations and print the projected rows, GB and "
                                            "hours from the measured yield; fetch no image, build nothing")):
    """Run the build-dataset flow and say where the results are.

    The config is checked first; a dataset that is already complete and current is
    reported without starting Prefect. Otherwise the flow runs against PREFECT_API_URL,
    or a temporary local server when that is not set."""
    from flows.local_server import prefect_api
    from lut_library import left_out_for, version_for
    from schemas.config import load_config
    from tasks.core.files import check_free
    from tasks.publish.build_state import finished_summary

    cfg = load_config(config, list(set_), out)
    cfg = cfg.model_copy(update={"out_dir": cfg.out_dir.resolve()})
    if dry_run:
        _print_projection(cfg, config)
        return
    summary = None if verify else finished_summary(cfg, version_for(cfg.luts), left_out_for(cfg.luts))
    if summary is not None:
        _print_done(summary, "all shards current: nothing to build")
        return
    # Failures that need no Prefect: one line now, not after starting a server.
    check_free(cfg.out_dir)
    if cfg.captions.enabled is True:
        from tasks.captions.models import captions_enabled

        captions_enabled(cfg)   # missing weights
    with prefect_api():
        from flows.build_dataset import PROGRESS_LOG, build_dataset

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("shards", total=None)
            handler = _ShardProgress(progress, bar)
            PROGRESS_LOG.addHandler(handler)
            PROGRESS_LOG.setLevel(logging.INFO)
            try:
                state = build_dataset(config=str(config), out_dir=str(cfg.out_dir),
                                      overrides=list(set_), verify=verify, return_state=True)
            finally:
                PROGRESS_LOG.removeHandler(handler)
    if state.is_cancelled():
        console.print(f"[yellow]stopped[/]: {state.message}")
        raise typer.Exit(130)
    summary = state.result()  # raises what failed the run (a UserError prints as one line)
    if not summary["complete"]:
        console.print(f"[yellow]not complete[/]: {summary['built']} shards built this run, "
                      f"{summary['waiting']} wait for images to be retried (images: {summary['images']})")
        return
    _print_done(summary, f"{summary['built']} built this run")


def _print_projection(cfg, config: Path) -> None:
    """What the build will make, from the annotations and the measured yield."""
    import os

    import pyarrow.compute as pc

    from tasks.acquire.annotations import ingest, read_annotation_table
    from tasks.publish.yield_report import measured, projection, settings_digest

    def by_split(counts: dict) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in counts.items())

    ingest(cfg)   # the annotations only (fetched when missing); no image
    splits = read_annotation_table(cfg.annotations_path)["split"]
    phrases = {s: int(pc.sum(pc.equal(splits, s)).as_py() or 0) for s in cfg.annotations.splits}
    console.print(f"{sum(phrases.values()):,} phrases ({by_split(phrases)})")
    got = measured(cfg)
    if got is None:
        console.print(f"[yellow]no measured yield[/] for these synthesis settings ({settings_digest(cfg)}): "
                      f"measure it with `.venv/bin/python bench/yield.py --config {config} --save`")
        return
    p = projection(got["rows_per_phrase"], phrases, got["bytes_per_row"], got["seconds_per_row"])
    cores = cfg.runner.max_workers or os.cpu_count() or 1
    console.print(f"projected: [bold]{p['rows']:,} rows[/] ({by_split(p['rows_by_split'])}) at "
                  f"{got['rows_per_phrase']:.3f} rows per phrase, ~{p['gb']:.1f} GB of shards, "
                  f"~{p['core_hours']:.1f} core-hours of synthesis (~{p['core_hours'] / cores:.1f} h on "
                  f"{cores} processes); measured {got['measured']} on {got['input']}")


def _print_done(summary: dict, note: str) -> None:
    console.print(f"[bold green]done[/]: {summary['rows']} rows in {summary['shards']} shards ({note})")
    base = Path(summary["out_dir"])
    console.print(f"  {'out_dir':9s} {base}")
    for key in ("manifest", "card", "preview"):
        console.print(f"  {key:9s} {Path(summary[key]).relative_to(base)}")


@app.command()
def inspect(out_dir: Path = typer.Argument(..., exists=True, file_okay=False),
            verify: bool = typer.Option(False, help="check every shard's sha256")):
    """Summarize a built dataset from its manifest (and optionally verify it)."""
    from tasks.core.files import sha256_file
    from tasks.publish.manifest import read_manifest

    manifest = read_manifest(out_dir)
    console.print(f"[bold]{manifest['name']}[/]  schema v{manifest['schema_version']}  "
                  f"config {manifest['config_hash']}  code {manifest['code_version']}")
    table = Table("split", "shards", "images", "phrases", "rows")
    for split, v in manifest["splits"].items():
        table.add_row(split, str(v["shards"]), str(v["images"]), str(v["tasks"]), str(v["rows"]))
    t = manifest["totals"]
    table.add_row("all", str(t["shards"]), "", "", str(t["rows"]), style="bold")
    console.print(table)
    skips = {**manifest["annotation_skips"]["counts"], **manifest["skips"]["counts"]}
    console.print("skipped: " + (json.dumps(skips) if skips else "none"))
    if verify:
        bad = [s["path"] for s in manifest["shards"]
               if not (out_dir / s["path"]).exists() or sha256_file(out_dir / s["path"]) != s["sha256"]]
        if bad:
            console.print(f"[red]{len(bad)} shard(s) differ from the manifest:[/] {bad}")
            raise typer.Exit(1)
        console.print(f"[green]all {len(manifest['shards'])} shards match the manifest[/]")


@app.command()
def preview(out_dir: Path = typer.Argument(..., exists=True, file_okay=False),
            out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG path"),
            n: int = typer.Option(8, "--n", "-n", min=1, max=64, help="samples in the grid")):
    """Write the composite | target | mask grid PNG of a built dataset."""
    from tasks.publish.card import write_preview
    from tasks.publish.manifest import read_manifest

    path = write_preview(out_dir, read_manifest(out_dir), out, n)
    console.print(f"wrote {path}")


app.command()(download)
app.command()(captions)
app.command()(train)
app.command()(evaluate)
app.command()(harmonize)
app.command(name="export-iharmony4")(export_iharmony4)
app.add_typer(luts_app, name="luts")
app.add_typer(models_app, name="models")


def main() -> None:
    """The CLI; an error the user can act on (bad config, busy folder, no manifest, a bad
    annotation file) prints as one line and exits 2."""
    from schemas.errors import UserError

    try:
        app()
    except UserError as exc:
        console.print(f"[red]error[/]: {exc}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
