"""The pipeline's stages as Prefect tasks: thin wrappers over ``tasks/``, which imports no
Prefect (so commands that only read a dataset, and worker processes, start without it).

Resume is decided by each stage's own done-markers and digests, never Prefect's cache.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled

from lut_library import pool_for, version_for
from tasks.acquire.annotations import ingest
from tasks.acquire.downloader import acquire_records
from tasks.publish.shards import ShardStopped, build_shard

_plain = {"cache_policy": NO_CACHE, "persist_result": False}


def artifact_key(kind: str, name: str) -> str:
    """Artifact keys may hold only lowercase letters, digits and dashes."""
    cleaned = "".join(c if c.isalnum() else "-" for c in f"{kind}-{name}".lower())
    return "-".join(part for part in cleaned.split("-") if part)


def acquire(cfg, records: list[dict[str, Any]]) -> Counter:
    """Acquisition, with a Prefect progress artifact updated every ~2 s."""
    total = max(len(records), 1)
    artifact = create_progress_artifact(0.0, key=artifact_key("acquire", cfg.name),
                                        description=f"acquire {len(records)} images")
    last = [0.0]

    def progress(done: int, counts: Counter) -> None:
        now = time.monotonic()
        if now - last[0] > 2.0 or done == total:
            last[0] = now
            parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            update_progress_artifact(artifact, 100.0 * done / total,
                                     description=f"{done}/{total} images: {parts}")

    return acquire_records(cfg, records, progress)


def build_shard_or_stop(cfg, spec, ledger, token=None, captions=False):
    """A shard, or a Cancelled task run when its build was cancelled (Ctrl-C) or lost
    the folder: nothing was published, and that is not a failure of the shard."""
    try:
        return build_shard(cfg, spec, ledger, pool_for(cfg.luts), version_for(cfg.luts), token, captions)
    except ShardStopped as exc:
        return Cancelled(message=str(exc))


def caption_part_or_stop(cfg, split, index, image_ids, ledger, phrases, token=None):
    """One caption part (see ``tasks.captions.stage.caption_part``); its writes check the
    folder token like shards do."""
    from tasks.captions.stage import caption_part
    from tasks.captions.store import PartStopped
    from tasks.core.files import still_owner

    try:
        return caption_part(cfg, split, index, image_ids, ledger, phrases,
                            may_publish=lambda: still_owner(cfg.out_dir, token))
    except PartStopped as exc:
        return Cancelled(message=str(exc))


ingest_task = task(name="ingest-annotations", **_plain)(ingest)
caption_part_task = task(name="caption-part", task_run_name="caption-part-{split}-{index}",
                         **_plain)(caption_part_or_stop)
acquire_task = task(name="acquire-images", **_plain)(acquire)
# One task run per shard (never per sample): a few hundred runs for the full dataset.
build_shard_task = task(name="build-shard", task_run_name="build-shard-{spec.split}-{spec.index}",
                        **_plain)(build_shard_or_stop)
