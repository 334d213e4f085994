"""The `phraseharmony` CLI on a built dataset."""

import pytest
from typer.testing import CliRunner

from flows.cli import app

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
