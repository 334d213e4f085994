"""Damaged state files are named in one log line and rebuilt or re-derived; the result
equals the clean sample build."""

import json
import logging

import pytest

from conftest import build, shard_bytes

pytestmark = pytest.mark.usefixtures("prefect_server")


def _marker(out, text):
    (out / "_done" / "train-00000.json").write_text(text)
    return "train-00000.json"


def _arrow(out, _):
    path = out / "annotations.arrow"
    path.write_bytes(path.read_bytes()[:5000])
    return "annotations.arrow"


def _sidecar(out, _):
    (out / "annotations.json").write_text("[]")
    return "annotations.json"


def _ledger(out, _):
    path = out / "images" / "_ledger.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        if row["image_id"] == 9100001:
            del row["status"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return "_ledger.jsonl"


def _manifest(out, _):
    (out / "_manifest.json").write_text("[1, 2, 3]")
    return None   # nothing to say: the manifest is simply written again


@pytest.mark.parametrize("damage, arg, rebuilt", [
    (_marker, "[]", 1), (_marker, "null", 1), (_marker, '{"shard": "train-00000"}', 1),
    (_arrow, None, 0), (_sidecar, None, 0), (_ledger, None, 0), (_manifest, None, 0),
])
def test_damaged_state_is_named_and_repaired(sample_copy, sample_dataset, caplog, damage, arg, rebuilt):
    named = damage(sample_copy, arg)
    with caplog.at_level(logging.WARNING, logger="phraseharmony"):
        summary = build(sample_copy)
    assert summary["complete"] and summary["built"] == rebuilt
    assert shard_bytes(sample_copy) == shard_bytes(sample_dataset)
    assert json.loads((sample_copy / "_manifest.json").read_text())["shards"] == \
        json.loads((sample_dataset / "_manifest.json").read_text())["shards"]
    if named:
        warnings = [r.getMessage() for r in caplog.records if r.name.startswith("phraseharmony")]
        assert any(named in w and ("damaged" in w) for w in warnings), warnings
    assert build(sample_copy)["built"] == 0
