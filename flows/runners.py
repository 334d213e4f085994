"""Task runner from config: threads, processes, or Dask (local cluster or a scheduler)."""

from __future__ import annotations

import os
import signal

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from schemas.config import RunnerConfig
from tasks.core.lifecycle import die_with_parent


def _process_worker_init(parent: int) -> None:
    """Workers die with the build, and leave Ctrl-C to it: the build cancels queued
    shards and revokes its folder token, which running shards check per image."""
    import tasks.publish.shards

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    tasks.publish.shards.WORKER_PARENT = parent


def make_task_runner(cfg: RunnerConfig) -> TaskRunner:
    if cfg.kind == "threads":
        # Bounded: an unbounded pool would start one thread per shard.
        return ThreadPoolTaskRunner(max_workers=cfg.max_workers or 4)
    if cfg.kind == "processes":
        return ProcessPoolTaskRunner(max_workers=cfg.max_workers, initializer=_process_worker_init,
                                     initargs=(os.getpid(),))
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    kwargs = {"processes": True, "threads_per_worker": 1, "dashboard_address": None,
              "resources": {cfg.gpu_resource: 1}}
    if cfg.max_workers:
        kwargs["n_workers"] = cfg.max_workers
    return DaskTaskRunner(cluster_kwargs=kwargs)
