"""Measured yield: rows per phrase of a config's synthesis settings, where the others
went, and the full VGPhraseCut build projected from it.

    .venv/bin/python bench/yield.py [--config configs/vgphrasecut.yaml] [--images 104] [--save]

Builds ``bench/stages.py``'s replicated input (the bundled sample's photos and
hand-drawn polygons, each replica graded by a photographic look) and the bundled sample
itself with the config's ``synthesis``, ``masks`` and ``luts`` settings (one process,
captions off), and prints per recipe and overall: phrases in, phrases skipped before
drawing (by reason), samples lost after ``max_attempts`` (by reason), rows out, rows
per phrase, and the projection for VGPhraseCut's 345,486 phrases by split, with GB and
core-hours of synthesis from the same build. ``--save`` records it in
``configs/measured_yield.json`` (what ``phraseharmony build --dry-run`` and the card
read), keyed by the settings' digest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _build(out: Path, overrides: list[str]) -> float:
    """Ingest, acquire and build every shard in this process (no Prefect: the timing is
    synthesis and encoding only); seconds spent building shards."""
    from bench.stages import run_stage

    args = {"out": str(out), "overrides": overrides}
    run_stage("ingest", args)
    run_stage("acquire", args)
    return run_stage("shards", args)["seconds"]


def _report(out: Path, cfg) -> dict:
    from tasks.publish.yield_report import check, yield_of

    markers = [json.loads(p.read_text()) for p in sorted((out / "_done").glob("*.json"))]
    rep = yield_of(markers, cfg.synthesis.composites_per_task)
    problems = check(rep)
    if problems:
        raise SystemExit(f"{out}: the counts do not add up: {problems}")
    rep["bytes_per_row"] = sum(m["bytes"] for m in markers) / max(1, rep["rows"])
    return rep


def main() -> None:
    from bench.stages import make_input
    from schemas.config import SAMPLE_ANNOTATIONS, load_config
    from tasks.publish.yield_report import MEASURED, VGPHRASECUT_PHRASES, projection, settings_digest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "vgphrasecut.yaml")
    ap.add_argument("--images", type=int, default=104)
    ap.add_argument("--save", action="store_true", help="record it in configs/measured_yield.json")
    a = ap.parse_args()
    cfg = load_config(a.config)
    settings = [f"synthesis={json.dumps(cfg.synthesis.model_dump(mode='json'))}",
                f"masks={json.dumps(cfg.masks.model_dump(mode='json'))}", f"seed={cfg.seed}",
                "captions.enabled=false"]
    work = Path(tempfile.mkdtemp(prefix="ph-yield-"))
    try:
        ann, photos = make_input(work, a.images)
        replicated = ["annotations.splits=[train]", f"annotations.dir={ann}", "images.source=local",
                      f"images.dir={photos}", "shards.images_per_shard=1000"]
        seconds = _build(work / "replicated", settings + replicated)
        rep = _report(work / "replicated", cfg)
        rep["seconds_per_row"] = seconds / max(1, rep["rows"])
        sample_sets = [f"annotations.dir={SAMPLE_ANNOTATIONS}", "images.source=sample"]
        _build(work / "sample", settings + sample_sets)
        sample = _report(work / "sample", cfg)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    proj = projection(rep["rows_per_phrase"], VGPHRASECUT_PHRASES, rep["bytes_per_row"],
                      rep["seconds_per_row"])
    print(f"config {a.config} (synthesis settings {settings_digest(cfg)}): composites_per_task "
          f"{cfg.synthesis.composites_per_task}, max_attempts {cfg.synthesis.max_attempts}")
    for name, r in (("replicated input", rep), ("bundled sample", sample)):
        print(f"\n{name}: {r['phrases_in']} phrases in, {sum(r['phrases_skipped'].values())} skipped before "
              f"drawing {r['phrases_skipped']}, {r['phrases_drawn']} drawn")
        print(f"  {r['samples_drawn']} samples drawn: {r['rows']} rows, {sum(r['samples_lost'].values())} "
              f"lost {r['samples_lost']}")
        print("  | recipe | rows | samples lost |\n  |---|---|---|")
        for recipe in sorted(set(r["rows_by_recipe"]) | set(r["samples_lost_by_recipe"])):
            print(f"  | {recipe} | {r['rows_by_recipe'].get(recipe, 0)} | "
                  f"{r['samples_lost_by_recipe'].get(recipe, 0)} |")
        print(f"  rows per phrase {r['rows_per_phrase']:.3f}")
    splits = ", ".join(f"{k} {v:,}" for k, v in proj["rows_by_split"].items())
    print(f"\nprojection for VGPhraseCut ({proj['phrases']:,} phrases): {proj['rows']:,} rows ({splits}), "
          f"{proj['gb']:.1f} GB of shards, {proj['core_hours']:.1f} core-hours of synthesis "
          f"({rep['seconds_per_row'] * 1e3:.1f} ms/row, one process, this machine)")
    if a.save:
        data = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
        data[settings_digest(cfg)] = {
            "config": str(a.config.resolve().relative_to(ROOT)), "measured": time.strftime("%Y-%m-%d"),
            "input": f"bench/stages.py replicated sample, {a.images} images",
            "rows_per_phrase": round(rep["rows_per_phrase"], 4),
            "bytes_per_row": round(rep["bytes_per_row"]), "seconds_per_row": round(rep["seconds_per_row"], 5),
            "sample_rows_per_phrase": round(sample["rows_per_phrase"], 4) if sample else None}
        MEASURED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"recorded in {MEASURED}")


if __name__ == "__main__":
    main()
