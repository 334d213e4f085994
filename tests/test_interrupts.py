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

from conftest import REPO, SAMPLE_CONFIG

pytestmark = pytest.mark.slow

# Long enough shards to be caught mid-build: one image each, many composites per phrase.
SLOW = ["annotations.splits=[train]", "shards.images_per_shard=1",
        "synthesis.composites_per_task=24"]


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


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _leftovers(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.name.endswith(".tmp") and p.is_file())


def _verify(out: Path, env: dict) -> None:
    res = subprocess.run([sys.executable, "-m", "flows.cli", "inspect", str(out), "--verify"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "match the manifest" in res.stdout, res.stdout + res.stderr


@pytest.fixture
def own_server_env(tmp_path):
    """No PREFECT_API_URL: the CLI starts (and must clean up) its own server."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return env


def test_sigkill_leaves_no_worker_or_server_behind(own_server_env, tmp_path):
    out = tmp_path / "out"
    proc = _cli(out, own_server_env, *SLOW, "runner.kind=processes", "runner.max_workers=2")
    try:
        _wait_for_tmp_shard(proc, out)
        children = _descendants(proc.pid)
        assert len(children) >= 3, children   # the server and two workers (at least)
        proc.send_signal(signal.SIGKILL)      # the CLI alone, as `kill -9 PID` does
        proc.wait()
        deadline = time.time() + 5
        while _alive(children) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(children), f"outlived the killed build: {_alive(children)}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    time.sleep(1.0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    again = subprocess.run([sys.executable, "-m", "flows.cli", "build", "--config", str(SAMPLE_CONFIG),
                            "--out", str(out)] + [a for o in SLOW for a in ("--set", o)],
                           cwd=REPO, env=own_server_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not _leftovers(out)
    _verify(out, own_server_env)


@pytest.mark.parametrize("runner, server", [("threads", "api"), ("processes", "own")])
def test_ctrl_c_stops_within_seconds_and_a_rerun_resumes(prefect_server, own_server_env, tmp_path,
                                                         runner, server):
    env = dict(own_server_env, PREFECT_API_URL=prefect_server) if server == "api" else own_server_env
    out = tmp_path / "out"
    proc = _cli(out, env, *SLOW, f"runner.kind={runner}", "runner.max_workers=2")
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

        with get_client(sync_client=True) as client:
            runs = [r for r in client.read_flow_runs(limit=50)
                    if r.parameters.get("out_dir") == str(out)]
        assert [r.state.type.value for r in runs] == ["CANCELLED"], runs

    again = subprocess.run([sys.executable, "-m", "flows.cli", "build", "--config", str(SAMPLE_CONFIG),
                            "--out", str(out)] + [a for o in SLOW for a in ("--set", o)]
                           + ["--set", f"runner.kind={runner}"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    _verify(out, env)
