"""The `phraseharmony` CLI on a built dataset."""

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from conftest import REPO
from flows.cli import app
from tasks.core.files import exclusive

pytestmark = pytest.mark.usefixtures("prefect_server")
runner = CliRunner()


def test_inspect_summarizes_and_verifies(sample_dataset):
    res = runner.invoke(app, ["inspect", str(sample_dataset), "--verify"])
    assert res.exit_code == 0, res.output
    assert "train" in res.output and "all 5 shards match" in res.output


def test_inspect_flags_a_tampered_shard(sample_copy):
    shard = sample_copy / "data" / "test" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    res = runner.invoke(app, ["inspect", str(sample_copy), "--verify"])
    assert res.exit_code == 1 and "differ from the manifest" in res.output


def test_preview_writes_a_png(sample_dataset, tmp_path):
    out = tmp_path / "grid.png"
    res = runner.invoke(app, ["preview", str(sample_dataset), "--out", str(out), "-n", "3"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_on_an_unfinished_folder_says_so(tmp_path):
    res = runner.invoke(app, ["inspect", str(tmp_path)])
    assert res.exit_code != 0 and "no manifest" in str(res.exception)


def test_build_via_cli(prefect_server, tmp_path):
    res = runner.invoke(app, ["build", "--config", "configs/sample.yaml", "--out",
                              str(tmp_path / "o"), "--set", "annotations.splits=[test]"])
    assert res.exit_code == 0, res.output
    assert "rows in 1 shards" in res.output and "preview" in res.output
    assert "1/1" in res.output  # the progress bar followed the flow


def _cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], cwd=REPO,
                          env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout)


def _no_api_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return env


def test_config_typo_is_one_line_before_anything_starts(tmp_path):
    t0 = time.monotonic()
    res = _cli("build", "--config", "configs/sample.yaml", "--out", tmp_path / "o",
               "--set", "synthesis.szie=128", env=_no_api_env(tmp_path))
    assert res.returncode == 2
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert lines == ["error: --set: unknown key synthesis.szie; did you mean synthesis.size?"]
    assert time.monotonic() - t0 < 15
    assert not (tmp_path / "o").exists() and not (tmp_path / "prefect-home").exists()
    bad_yaml = _cli("build", "--config", "configs/sample.yaml", "--set", "seed=[1,")
    assert bad_yaml.returncode == 2 and "override 'seed=[1,'" in bad_yaml.stdout
    assert "Traceback" not in bad_yaml.stdout + bad_yaml.stderr


def test_no_op_build_and_reading_commands_need_no_prefect(sample_copy, tmp_path):
    env = _no_api_env(tmp_path)
    res = _cli("build", "--config", "configs/sample.yaml", "--out", sample_copy, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "nothing to build" in res.stdout and "Flow run" not in res.stdout
    assert not (tmp_path / "prefect-home").exists()   # no server was started
    code = ("import sys; from typer.testing import CliRunner; from flows.cli import app\n"
            f"r = CliRunner().invoke(app, ['inspect', {str(sample_copy)!r}])\n"
            f"p = CliRunner().invoke(app, ['preview', {str(sample_copy)!r}, '-o', "
            f"{str(tmp_path / 'p.png')!r}])\n"
            "print(r.exit_code, p.exit_code, 'prefect' in sys.modules)")

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["0", "0", "False"], out.stdout + out.stderr


def test_actionable_errors_are_one_line(sample_copy, tmp_path):
    t0 = time.monotonic()
    with exclusive(sample_copy):
        res = _cli("build", "--config", "configs/sample.yaml", "--out", sample_copy, "--set", "seed=3",
                   env=_no_api_env(tmp_path))
    assert res.returncode == 2
    assert res.stdout.strip().splitlines()[-1].endswith("another build or download is running on this folder")
    assert "Traceback" not in res.stdout + res.stderr
    # Found before a temporary Prefect server starts (that alone took ~25 s).
    assert not (tmp_path / "prefect-home" / "temporary-server.log").exists()
    assert time.monotonic() - t0 < 20
    (sample_copy / "_manifest.json").write_text("[]")
    res = _cli("inspect", sample_copy)
    assert res.returncode == 2 and res.stdout.count("\n") == 1
    assert "not a PhraseHarmony manifest" in res.stdout


def test_a_changed_config_says_what_it_rebuilds_and_artifacts_have_keys(prefect_server, sample_copy):
    env = dict(os.environ, PREFECT_API_URL=prefect_server)
    res = _cli("build", "--config", "configs/sample.yaml", "--out", sample_copy, "--set", "seed=5", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    said = res.stdout + res.stderr   # Prefect's log lines go to stderr
    assert "every shard will be rebuilt" in said and "seed: 0 -> 5" in said
    assert "5 built this run" in res.stdout
    # What `prefect artifact ls` (latest of each key) and `ls --all` list, read through
    # the client here: a CLI process of its own for each costs ~3 s of imports.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
        ArtifactFilter,
        ArtifactFilterKey,
    )

    keys = ["build-sample", "shards-sample"]
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys)))
        every = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    assert {a.key for a in latest} == set(keys), latest
    assert {a.key for a in every} == set(keys) and len(every) >= 2, every
