"""``phraseharmony luts``: build the built-in looks, check a user's folder, contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The LUT library: build, check, show.")
console = Console()


@app.command()
def build(out: Path = typer.Option(None, "--out", "-o", help="folder for the .cube files "
                                   "(default lut_library/generated)"),
          manifest: bool = typer.Option(True, help="also rewrite lut_library/manifest.json")):
    """Write every built-in look as a 33^3 .cube with its TITLE (deterministic bytes)."""
    from lut_library.library import GENERATED, MANIFEST, write_cubes, write_manifest

    paths = write_cubes(out or GENERATED)
    console.print(f"wrote {len(paths)} .cube files to {paths[0].parent}")
    if manifest:
        data = write_manifest()
        console.print(f"manifest {MANIFEST} ({data['count']} looks, version {data['version']})")


@app.command()
def check(folder: Path = typer.Argument(..., help="a folder of .cube files"),
          near: float = typer.Option(1.0, help="near-duplicate threshold, mean ΔE2000 on a chart")):
    """Validate a user's LUT folder: errors (file and line), duplicates and near-duplicates
    (of each other or of a built-in look), technical (log-to-video) LUTs. Exit code 1
    when any file cannot be read."""
    from lut_library import builtin_luts
    from lut_library.library import chart_delta_e, scan_folder

    entries = scan_folder(folder, builtin_luts(), near_delta_e=near)
    table = Table("LUT", "size", "ΔE vs identity", "verdict")
    for e in entries:
        if e.lut is None:
            table.add_row(e.id, "", "", "[red]error[/] (below)")
            continue
        verdict = ("duplicate of " + e.duplicate_of if e.duplicate_of else
                   "near-duplicate of " + e.near_duplicate_of if e.near_duplicate_of else "ok")
        if e.technical:
            verdict += " (technical: excluded by default)"
        table.add_row(e.id, str(e.lut.size), f"{chart_delta_e(e.lut):.1f}", verdict)
    console.print(table)
    for e in entries:
        if e.error:  # whole, unwrapped: it names the file and the line
            console.print(f"error: {e.error}", soft_wrap=True, markup=False)
    errors = sum(e.lut is None for e in entries)
    console.print(f"{len(entries)} files, {errors} unreadable, "
                  f"{sum(bool(e.duplicate_of) for e in entries)} duplicates, "
                  f"{sum(bool(e.near_duplicate_of) for e in entries)} near-duplicates, "
                  f"{sum(e.technical for e in entries)} technical")
    if errors:
        raise typer.Exit(1)


@app.command()
def show(out: Path = typer.Option(Path("lut_library/contact_sheet.png"), "--out", "-o"),
         photo: str = typer.Option("astronaut", help="packaged photo to grade"),
         folder: Optional[Path] = typer.Option(None, help="also show this user folder")):
    """A contact sheet PNG: every look applied to one photo, labelled with its id."""
    from lut_library.contact_sheet import contact_sheet
    from lut_library.library import build_library

    luts = build_library(33, (str(folder),) if folder else ())
    contact_sheet(luts, photo).save(out)
    console.print(f"wrote {out} ({len(luts)} looks)")
