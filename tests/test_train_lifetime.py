"""A killed trainer leaves no process behind: its loader fork server, DataLoader workers and
the multiprocessing resource tracker go with it (alone, and as one rank of torchrun)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import alive, children, descendants
from test_train_runs import TINY

from conftest import REPO, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process tree")


def _args(data: Path, out: Path, workers: int) -> list[str]:
    return [f"--set={s}" for s in (f"data.dir={data}", f"out_dir={out}", *TINY, "steps=100000",
                                   f"data.workers={workers}", "val_every=2", "checkpoint_every=3",
                                   "log_every=1")]


def _started(run: Path) -> bool:
    log = run / "log.jsonl"
    return log.exists() and '"kind": "val"' in log.read_text()


def test_a_sigkilled_trainer_takes_its_loader_processes_with_it(sample_dataset, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "train", *_args(sample_dataset, run, 2)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Training and validation have both started their workers (2 + 2, the fork
        # server and the resource tracker).
        wait_until(lambda: _started(run) and len(descendants(proc.pid)) >= 6, 120, "the loaders to start")
        kids = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        wait_until(lambda: not alive(kids), 15, f"{len(alive(kids))} orphaned processes to end")
    finally:
        proc.kill()


def test_one_killed_torchrun_rank_ends_the_whole_run(sample_dataset, tmp_path):
    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "train",
                             *_args(sample_dataset, run, 1)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _started(run), 180, "both ranks to train")
        ranks = children(proc.pid)
        assert len(ranks) >= 2
        kids = descendants(proc.pid)
        os.kill(max(ranks), signal.SIGKILL)
        assert proc.wait(timeout=120) != 0
        wait_until(lambda: not alive(kids), 15, f"{len(alive(kids))} orphaned processes to end")
    finally:
        proc.kill()
