"""The ``build-dataset`` flow: annotations -> images -> shards -> manifest -> card.

It only composes stages from ``tasks/``. Every stage skips work whose output is already
valid, so a scheduled run finishes a half-done job and a run on a done job ends fast.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.runners import make_task_runner
from schemas.config import RunConfig, load_config
from tasks.acquisition import acquire_task
from tasks.annotations import SkipLog, ingest_task, read_annotation_table
from tasks.card import write_card, write_preview
from tasks.files import exclusive
from tasks.ledger import SETTLED, read_ledger
from tasks.manifest import build_manifest, write_manifest
from tasks.shards import ShardSpec, build_shard_task, completed_marker, plan_shards

PROGRESS_LOG = logging.getLogger("phraseharmony.progress")


def synthesize_shards(cfg: RunConfig, specs: list[ShardSpec], ledger: dict[int, dict],
                      logger) -> list[dict[str, Any]]:
    """Build shards on the configured task runner, reporting progress as they finish.

    The runner is used directly (not as a subflow) so the per-image ledger rows travel
    with each shard's task run only and never land in the API as flow parameters.
    """
    artifact = create_progress_artifact(progress=0.0, description=f"{len(specs)} shards to build")
    markers = []
    with make_task_runner(cfg.runner) as runner:
        futures = [
            runner.submit(build_shard_task, parameters={
                "cfg": cfg, "spec": spec,
                "ledger": {i: ledger[i] for i in spec.image_ids if i in ledger}})
            for spec in specs
        ]
        for n, future in enumerate(futures, 1):
            marker = future.result()
            markers.append(marker)
            logger.info("[%d/%d] shard %s: %d rows, %d skipped", n, len(specs), marker["shard"],
                        marker["rows"], sum(marker["skips"]["counts"].values()))
            # A machine-readable event for callers that show progress (the CLI's bar).
            PROGRESS_LOG.info("shard", extra={"shard_progress": (n, len(specs))})
            update_progress_artifact(artifact, progress=100.0 * n / len(specs))
    return markers


@flow(name="build-dataset", log_prints=True)
def build_dataset(config: str = "configs/sample.yaml", out_dir: str | None = None,
                  overrides: list[str] | None = None, verify: bool = False) -> dict[str, Any]:
    """Build (or finish, or confirm) the dataset described by ``config``.

    ``overrides`` are ``key.sub=value`` strings (e.g. ``runner.kind=processes``);
    ``verify`` re-hashes finished shards instead of trusting size checks.
    """
    logger = get_run_logger()
    cfg = load_config(config, overrides, out_dir)
    cfg = cfg.model_copy(update={"out_dir": cfg.out_dir.resolve()})
    with exclusive(cfg.out_dir):
        return _build(cfg, verify, logger)


def _build(cfg: RunConfig, verify: bool, logger) -> dict[str, Any]:
    logger.info("config %s (%s) -> %s", cfg.name, cfg.config_hash(), cfg.out_dir)
    ingested = ingest_task(cfg)
    images = ingested["images"]
    logger.info("annotations: %d phrase tasks over %d images%s", ingested["rows"], len(images),
                " (unchanged)" if ingested["reused"] else "")
    counts = acquire_task(cfg, list(images.values()))
    logger.info("images: %s", dict(sorted(counts.items())))
    ledger = read_ledger(cfg.images_dir)

    specs = plan_shards(read_annotation_table(cfg.annotations_path), cfg.shards.images_per_shard)
    # A shard is built once every image of it has settled (downloaded, or failed for
    # good); shards with images still to be retried wait for a later run.
    ready = [s for s in specs if all(ledger.get(i, {}).get("status") in SETTLED for i in s.image_ids)]
    waiting = len(specs) - len(ready)
    done = {s.name: completed_marker(cfg.out_dir, s, cfg, ledger, verify) for s in ready}
    pending = [s for s in ready if done[s.name] is None]
    if pending:
        logger.info("%d of %d shards to build on %s", len(pending), len(specs), cfg.runner.kind)
        for marker in synthesize_shards(cfg, pending, ledger, logger):
            done[marker["shard"]] = marker
    elif not waiting:
        logger.info("all %d shards complete: nothing to build", len(specs))
    if waiting:
        # Not complete: no manifest (an old one would claim otherwise).
        (cfg.out_dir / "_manifest.json").unlink(missing_ok=True)
        logger.info("%d shards wait for images that will be retried next run; %d built this "
                    "run, %d complete", waiting, len(pending), len(ready))
        return {"out_dir": str(cfg.out_dir), "built": len(pending), "waiting": waiting,
                "complete": False, "images": dict(counts)}

    manifest = build_manifest(cfg, [done[s.name] for s in specs], ingested["files"],
                              SkipLog.from_json(ingested["skips"]))
    changed = write_manifest(cfg.out_dir, manifest)
    card, preview = cfg.out_dir / "README.md", cfg.out_dir / "preview.png"
    if changed or not card.exists() or not preview.exists():
        write_card(cfg, cfg.out_dir, manifest)
        write_preview(cfg.out_dir, manifest)
    summary = {"out_dir": str(cfg.out_dir), "rows": manifest["totals"]["rows"],
               "shards": manifest["totals"]["shards"], "built": len(pending),
               "manifest": str(cfg.out_dir / "_manifest.json"), "card": str(card),
               "preview": str(preview), "waiting": 0, "complete": True,
               "images": dict(counts)}
    logger.info("dataset %s: %d rows in %d shards (%d built this run)",
                "updated" if changed else "unchanged", summary["rows"], summary["shards"],
                len(pending))
    return summary


if __name__ == "__main__":  # pragma: no cover - `python -m flows.build_dataset CONFIG`
    import sys

    print(build_dataset(*(sys.argv[1:2] or [])))
