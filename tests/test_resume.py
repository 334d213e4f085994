"""Resume: done runs do nothing, lost shards come back byte-identical, kills leave no lies."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, SAMPLE_CONFIG, build, shard_bytes

pytestmark = pytest.mark.usefixtures("prefect_server")


def mtimes(out):
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


def test_second_run_rewrites_nothing(sample_copy):
    before = mtimes(sample_copy)
    t0 = time.perf_counter()
    summary = build(sample_copy)
    elapsed = time.perf_counter() - t0
    assert summary["built"] == 0
    assert mtimes(sample_copy) == before
    assert elapsed < 20, elapsed


def test_deleted_shard_is_rebuilt_exactly(sample_copy):
    before = shard_bytes(sample_copy)
    victim = sample_copy / "data" / "train" / "part-00001.parquet"
    victim.unlink()
    others = {p: p.stat().st_mtime_ns for p in (sample_copy / "data").rglob("*.parquet")}
    summary = build(sample_copy)
    assert summary["built"] == 1
    assert shard_bytes(sample_copy) == before
    assert all(p.stat().st_mtime_ns == m for p, m in others.items())


def test_truncated_shard_is_not_taken_for_complete(sample_copy):
    before = shard_bytes(sample_copy)
    victim = sample_copy / "data" / "val" / "part-00000.parquet"
    victim.write_bytes(victim.read_bytes()[:1000])
    assert build(sample_copy)["built"] == 1
    assert shard_bytes(sample_copy) == before


def test_changed_config_rebuilds_everything(sample_copy):
    summary = build(sample_copy, "seed=5")
    assert summary["built"] == summary["shards"]


def test_sigkill_mid_shard_leaves_nothing_complete(prefect_server, few_photos, tmp_path):
    """Kill a CLI build while it writes a big shard (two photos, many composites each);
    the next run completes it and the result equals a clean build of the same config."""
    overrides = ["shards.images_per_shard=8", "synthesis.composites_per_task=12",
                 "annotations.splits=[train]", f"annotations.dir={few_photos}"]
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "flows.cli", "build", "--config", str(SAMPLE_CONFIG),
            "--out", str(out)] + [a for o in overrides for a in ("--set", o)]
    proc = subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard_dir = out / "data" / "train"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if shard_dir.exists() and any(p.name.endswith(".tmp") for p in shard_dir.iterdir()):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "build ended before the shard was being written"
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "_manifest.json").exists()
    assert not (out / "_done" / "train-00000.json").exists()
    assert not (shard_dir / "part-00000.parquet").exists()

    summary = build(out, *overrides)
    assert summary["built"] == 1
    clean = tmp_path / "clean"
    build(clean, *overrides)
    assert shard_bytes(out) == shard_bytes(clean)
    assert not [p.name for p in shard_dir.iterdir() if p.name.endswith(".tmp")]
    assert (out / "_manifest.json").read_bytes() == (clean / "_manifest.json").read_bytes()
