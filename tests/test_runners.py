"""The same shards, byte for byte, whichever task runner builds them."""

import pytest

from conftest import build, shard_bytes

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


@pytest.mark.parametrize("runner", [
    ["runner.kind=processes", "runner.max_workers=2"],
    ["runner.kind=dask", "runner.max_workers=2"],
])
def test_byte_identical_across_runners(sample_dataset, tmp_path, runner):
    out = tmp_path / "out"
    summary = build(out, *runner)
    assert summary["built"] == summary["shards"] == 5
    assert shard_bytes(out) == shard_bytes(sample_dataset)
    assert (out / "_manifest.json").read_bytes() == (sample_dataset / "_manifest.json").read_bytes()
