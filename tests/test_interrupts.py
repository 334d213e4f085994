"""SIGKILL and Ctrl-C of a CLI build: no process outlives a killed build, nothing is
half-published, Ctrl-C stops within seconds with one line and a Cancelled flow run,
and the next run resumes to a complete, verified dataset."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import alive, descendants

from conftest import REPO, SAMPLE_CONFIG, build, wait_until

pytestmark = pytest.mark.slow

# Long enough shards to be caught mid-build (one image each, many composites per phrase),
# and few of them (two photos: `few_photos`), so the rerun that completes it is short.
SLOW = ["annotations.splits=[train]", "shards.images_per_shard=1",
        "synthesis.composites_per_task=16"]


@pytest.fixture
def slow(few_photos) -> list[str]:
    return [*SLOW, f"annotations.dir={few_photos}"]


def _cli(out: Path, env: dict, *overrides: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "flows.cli", "build", "--config", str(SAMPLE_CONFIG),
            "--out", str(out)] + [a for o in overrides for a in ("--set", o)]
    return subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_tmp_shard(proc, out: Path, timeout: float = 180) -> None:
    shard_dir = out / "data" / "train"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if shard_dir.exists() and any(p.name.endswith(".tmp") for p in shard_dir.iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no shard was being written (exit {proc.poll()}): {proc.stdout.read()}")


def _leftovers(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.name.endswith(".tmp") and p.is_file())


def _resume_and_verify(out: Path, slow: list[str]) -> None:
    """The rerun (in this process, on the suite's server: what is tested is the killed
    build, not this one) completes the dataset, which then verifies."""
    from typer.testing import CliRunner

    from flows.cli import app

    assert build(out, *slow)["complete"]
    assert not _leftovers(out)
    res = CliRunner().invoke(app, ["inspect", str(out), "--verify"])
    assert res.exit_code == 0 and "match the manifest" in res.output, res.output


@pytest.fixture
def own_server_env(prefect_home):
    """No PREFECT_API_URL: the CLI starts (and must clean up) its own server."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(prefect_home)
    return env


def test_sigkill_leaves_no_worker_or_server_behind(prefect_server, own_server_env, slow, tmp_path):
    """The killed build owns its server (the server must die with it); the rerun uses
    the suite's."""
    out = tmp_path / "out"
    proc = _cli(out, own_server_env, *slow, "runner.kind=processes", "runner.max_workers=2")
    try:
        _wait_for_tmp_shard(proc, out)
        children = descendants(proc.pid)
        assert len(children) >= 3, children   # the server and two workers (at least)
        proc.send_signal(signal.SIGKILL)      # the CLI alone, as `kill -9 PID` does
        proc.wait()
        wait_until(lambda: not alive(children), 5, "the killed build's processes to end", every=0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    time.sleep(1.0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    _resume_and_verify(out, slow)


@pytest.mark.parametrize("runner, server", [("threads", "api"), ("processes", "own")])
def test_ctrl_c_stops_within_seconds_and_a_rerun_resumes(prefect_server, own_server_env, slow, tmp_path,
                                                         runner, server):
    """``server``: the interrupted build's (its own, or the suite's through the API)."""
    env = dict(own_server_env, PREFECT_API_URL=prefect_server) if server == "api" else own_server_env
    out = tmp_path / "out"
    proc = _cli(out, env, *slow, f"runner.kind={runner}", "runner.max_workers=2")
    try:
        _wait_for_tmp_shard(proc, out)
        os.killpg(proc.pid, signal.SIGINT)    # what a terminal sends on Ctrl-C
        t0 = time.monotonic()
        output, _ = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output
    assert stopped_in < 20, stopped_in
    assert "stopped" in output and "a rerun resumes" in output, output
    assert "Unable to connect" not in output and "Traceback" not in output, output
    time.sleep(1.0)
    assert not _leftovers(out)
    done = sorted(p.stem for p in (out / "_done").glob("*.json")) if (out / "_done").exists() else []
    for name in done:   # whatever was published is whole
        split, index = name.split("-")
        assert (out / "data" / split / f"part-{index}.parquet").exists()
    if server == "api":
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.sorting import FlowRunSort

        with get_client(sync_client=True) as client:   # (the suite's server holds many runs)
            runs = [r for r in client.read_flow_runs(limit=50, sort=FlowRunSort.EXPECTED_START_TIME_DESC)
                    if r.parameters.get("out_dir") == str(out)]
        assert [r.state.type.value for r in runs] == ["CANCELLED"], runs
    _resume_and_verify(out, slow)
