"""The code's layout: moving modules between folders must not change a single row, and
imports run one way (core, then the phases in pipeline order, then the look library and
the flows on top)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq

GOLDEN = Path(__file__).parent / "fixtures" / "sample_row_digests.json"


def row_digests(out_dir: Path) -> dict[str, str]:
    """sample_id -> sha256 over every column of its row (bytes as they are, the rest as
    JSON), for every shard of a build."""
    digests = {}
    for path in sorted((out_dir / "data").rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            h = hashlib.sha256()
            for name in sorted(row):
                value = row[name]
                h.update(name.encode())
                h.update(value if isinstance(value, bytes)
                         else json.dumps(value, sort_keys=True, default=repr).encode())
            digests[row["sample_id"]] = h.hexdigest()
    return dict(sorted(digests.items()))


def test_sample_rows_equal_the_recorded_ones(sample_dataset):
    """The sample build's rows, digest by digest, as recorded before `tasks/` was split
    into phase folders. A change that is meant to alter rows (a new recipe, a judge
    rule) rewrites the record: PHRASEHARMONY_WRITE_GOLDEN=1 pytest tests/test_layout.py."""
    got = row_digests(sample_dataset)
    if os.environ.get("PHRASEHARMONY_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=0) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert len(got) == len(want) and got.keys() == want.keys()
    changed = sorted(k for k in want if got[k] != want[k])
    assert not changed, f"{len(changed)} of {len(want)} rows changed, first {changed[:3]}"
