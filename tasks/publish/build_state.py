"""Where a build stands: which shards are current, which wait for images, whether there
is anything to do at all. Shared by the flow and by the CLI, which answers a build with
nothing to do without starting Prefect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.config import RunConfig
from schemas.records import LedgerRow
from tasks.acquire.annotations import SkipLog, ingest, read_annotation_table
from tasks.acquire.downloader import make_source, needs_work
from tasks.acquire.ledger import SETTLED, read_ledger
from tasks.core.shard_plan import ShardSpec, completed_marker, plan_shards
from tasks.publish.manifest import build_manifest, read_manifest_or_none


@dataclass
class ShardState:
    specs: list[ShardSpec]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> current marker
    pending: list[ShardSpec] = field(default_factory=list)        # ready, to build
    waiting: list[ShardSpec] = field(default_factory=list)        # images not settled yet


def is_ready(spec: ShardSpec, ledger: dict[int, LedgerRow]) -> bool:
    """A shard (and its caption part) is built once all of its images have settled."""
    return all(ledger.get(i, {}).get("status") in SETTLED for i in spec.image_ids)


def shard_state(cfg: RunConfig, ledger: dict[int, LedgerRow], luts_version: str, verify: bool = False,
                extras: dict[str, str] | None = None) -> ShardState:
    """Plan the shards and sort them: current, to build now, or waiting for images
    that will be retried. ``extras``: the caption parts each shard joins."""
    specs = plan_shards(read_annotation_table(cfg.annotations_path), cfg, ledger, luts_version,
                        extras)
    state = ShardState(specs)
    for spec in specs:
        if not is_ready(spec, ledger):
            state.waiting.append(spec)
            continue
        marker = completed_marker(cfg.out_dir, spec, ledger, verify)
        if marker is None:
            state.pending.append(spec)
        else:
            state.done[spec.name] = marker
    return state


def acquisition_pending(cfg: RunConfig, records, ledger: dict[int, LedgerRow]) -> int:
    """How many images an acquisition run would try to fetch now."""
    source = make_source(cfg)
    try:
        return sum(needs_work(rec, ledger.get(rec["image_id"]), cfg.images_dir, source,
                              cfg.images.retry_failed) is None for rec in records)
    finally:
        source.close()


def finished_summary(cfg: RunConfig, luts_version: str, luts_left_out: list[str]) -> dict[str, Any] | None:
    """The summary of a dataset that a build would leave exactly as it is (table current,
    no image to fetch, every shard current, manifest, card and preview in place), else
    None. Reads only; starts nothing. ``luts_*``: the config's look library
    (``lut_library.version_for``, ``left_out_for``)."""
    try:
        ingested = ingest(cfg, reuse_only=True)
        if ingested is None:
            return None
        ledger = read_ledger(cfg.images_dir)
        if acquisition_pending(cfg, ingested["images"].values(), ledger):
            return None
        captions = _current_caption_extras(cfg, ledger)
        if captions is None:
            return None
        captions_on, extras = captions
        state = shard_state(cfg, ledger, luts_version, extras=extras)
    except (OSError, ValueError):
        return None
    if state.pending or state.waiting:
        return None
    manifest = build_manifest(cfg, [state.done[s.name] for s in state.specs], ingested["files"],
                              SkipLog.from_json(ingested["skips"]), luts_version, luts_left_out,
                              captions_on, ingested["images"])
    if read_manifest_or_none(cfg.out_dir) != manifest:
        return None
    if not all((cfg.out_dir / name).exists() for name in ("README.md", "preview.png")):
        return None
    return dataset_summary(cfg, manifest, built=0)


def _current_caption_extras(cfg: RunConfig, ledger) -> tuple[bool, dict[str, str]] | None:
    """(captions on, the caption parts each shard joins) when all are current (None: some
    part, or the captions setting, needs the flow)."""
    from tasks.captions.plan import CAPTIONS_OFF, caption_extras

    table = read_annotation_table(cfg.annotations_path)
    specs = plan_shards(table, cfg, ledger, "")
    if cfg.captions.enabled is False:
        return False, {s.name: CAPTIONS_OFF for s in specs}
    from tasks.captions.models import ModelMissing, captions_enabled
    from tasks.captions.stage import model_identity

    try:
        on, _ = captions_enabled(cfg)
    except ModelMissing:
        return None
    if not on:
        return False, {s.name: CAPTIONS_OFF for s in specs}
    extras, todo = caption_extras(cfg, [s for s in specs if is_ready(s, ledger)], ledger, table,
                                  model_identity(cfg))
    return None if todo else (True, extras)


def dataset_summary(cfg: RunConfig, manifest: dict[str, Any], built: int) -> dict[str, Any]:
    out = cfg.out_dir
    return {"out_dir": str(out), "rows": manifest["totals"]["rows"],
            "shards": manifest["totals"]["shards"], "built": built,
            "splits": {s: v["rows"] for s, v in manifest["splits"].items()},
            "manifest": str(out / "_manifest.json"), "card": str(out / "README.md"),
            "preview": str(out / "preview.png"), "waiting": 0, "complete": True}
