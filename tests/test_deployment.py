"""`prefect deployment run build-dataset/sample`, then `train-harmonizer/sample` on what it
built, against a real server, pools and worker.

Everything runs as separate processes on 127.0.0.1 with a temporary PREFECT_HOME, as a
user would start them from the README; the test stops all of it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, wait_until
from tasks.core.files import sha256_file

pytestmark = pytest.mark.slow
PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url: str, path: str, body: dict | None = None):
    req = urllib.request.Request(url + path, data=json.dumps(body or {}).encode(),
                                 headers={"content-type": "application/json"},
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def stop(proc: subprocess.Popen, name: str) -> None:
    if proc.poll() is not None:
        return
    # A Prefect worker needs a second SIGINT to stop; the server stops on the first.
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def test_sample_deployment_runs_on_a_real_server(prefect_home, tmp_path):
    """Owns its server (not the suite's): `prefect server start` itself is under test,
    with work pools, `prefect deploy --all` and a worker that runs the deployments."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_API_URL": url,
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PWD": str(REPO), "PREFECT_LOGGING_LEVEL": "INFO"}
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []

    def start(name, *args):
        proc = subprocess.Popen([PREFECT, *args], cwd=REPO, env=env, start_new_session=True,
                                stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        procs.append((proc, name))
        return proc

    def run(*args, timeout=120):
        res = subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=timeout)
        assert res.returncode == 0, f"prefect {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
        return res.stdout

    out = tmp_path / "dataset"
    try:
        start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.time() + 90
        while True:
            try:
                if api(url, "/health") is True:
                    break
            except OSError:
                pass
            assert time.time() < deadline, (logs / "server.log").read_text()
            time.sleep(0.5)

        run("work-pool", "create", "phraseharmony", "--type", "process")
        run("work-pool", "create", "phraseharmony-gpu", "--type", "process")
        run("--no-prompt", "deploy", "--all")
        flows = {f["id"]: f["name"] for f in api(url, "/flows/filter", {})}
        deployments = {f"{flows[d['flow_id']]}/{d['name']}": d for d in api(url, "/deployments/filter", {})}
        assert set(deployments) == {"build-dataset/sample", "build-dataset/nightly",
                                    "train-harmonizer/sample", "train-harmonizer/ht",
                                    "train-harmonizer/clipseg-ht"}
        assert deployments["train-harmonizer/ht"]["work_pool_name"] == "phraseharmony-gpu"
        assert deployments["train-harmonizer/clipseg-ht"]["work_pool_name"] == "phraseharmony-gpu"
        nightly = deployments["build-dataset/nightly"]
        assert nightly["schedules"] and nightly["schedules"][0]["schedule"]["cron"]
        # The full download starts only when someone resumes the schedule on purpose.
        assert nightly["schedules"][0]["active"] is False
        assert nightly["global_concurrency_limit"]["limit"] == 1

        start("worker", "worker", "start", "--pool", "phraseharmony")
        watched = run("deployment", "run", "build-dataset/sample", "--param", f"out_dir={out}",
                      "--watch", "--watch-timeout", "240", timeout=300)
        # The summary event: in the watch's output, or among the server's events (the
        # watch may print only the final state when the run ends before it subscribes).
        # The server persists events in batches (a flush every few seconds), so the event
        # may reach the filter a little after the run's final state: poll for it.
        if "phraseharmony.dataset.built" not in watched:
            built = {"filter": {"event": {"name": ["phraseharmony.dataset.built"]}}}
            wait_until(lambda: api(url, "/events/filter", built)["events"], 60,
                       f"the summary event; the watch printed: {watched}", every=1)

        runs = api(url, "/flow_runs/filter", {"flow_runs": {"deployment_id": {
            "any_": [deployments["build-dataset/sample"]["id"]]}}})
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
        assert "rows in 5 shards (5 built this run) in" in " ".join(runs[0]["state"]["message"].split())

        params = {"overrides": [f"data.dir={out}", f"out_dir={tmp_path / 'run'}", "steps=10",
                                "val_every=5", "checkpoint_every=5"]}
        run("deployment", "run", "train-harmonizer/sample", "--params", json.dumps(params),
            "--watch", "--watch-timeout", "240", timeout=300)
        runs = api(url, "/flow_runs/filter", {"flow_runs": {"deployment_id": {
            "any_": [deployments["train-harmonizer/sample"]["id"]]}}})
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
    finally:
        for proc, name in reversed(procs):  # worker first, then server
            stop(proc, name)

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["totals"]["rows"] >= 20   # the sample: 20 rows (fixtures/sample_row_digests.json)
    for shard in manifest["shards"]:
        assert sha256_file(out / shard["path"]) == shard["sha256"]
    assert (out / "README.md").exists() and (out / "preview.png").exists()
    assert (tmp_path / "run" / "checkpoints" / "step-00000010" / "model.safetensors").exists()
    assert (tmp_path / "run" / "checkpoints" / "step-00000010" / "eval-test" / "metrics.md").exists()
