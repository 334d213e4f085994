"""Stage: image acquisition, as the flow runs it: ``tasks.downloader`` over the
records, with a Prefect progress artifact. See ``tasks/downloader.py`` for the mechanics
(sources, retries, resume, verification) and ``tasks/ledger.py`` for the ledger."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prefect import task as prefect_task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from tasks.downloader import acquire_records


def acquire(cfg, records: list[dict[str, Any]]) -> Counter:
    """The flow's stage: acquire, with a Prefect progress artifact updated every ~2 s."""
    total = max(len(records), 1)
    artifact = create_progress_artifact(0.0, description=f"acquire {len(records)} images")
    last = [0.0]

    def progress(done: int, counts: Counter) -> None:
        now = time.monotonic()
        if now - last[0] > 2.0 or done == total:
            last[0] = now
            update_progress_artifact(artifact, 100.0 * done / total,
                                     description=_summary(done, total, counts))

    return acquire_records(cfg, records, progress)


def _summary(done: int, total: int, counts: Counter) -> str:
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{done}/{total} images: {parts}"


# Resume is decided by the ledger, not Prefect's cache.
acquire_task = prefect_task(name="acquire-images", cache_policy=NO_CACHE, persist_result=False)(acquire)
