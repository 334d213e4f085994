"""export-iharmony4: our shards in iHarmony4's layout, read back by the same loader
(and by HT's naming rule), resumable after a kill, refused over another export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest

from conftest import REPO
from schemas.train_config import TrainData
from tasks.publish.export_iharmony4 import ExportError, export
from train.loader import Loader
from train.sources import IHarmony4Source, open_source


def _dec(data, flags=cv2.IMREAD_COLOR):
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def test_export_then_read_gives_the_same_pixels_masks_and_pairs(sample_dataset, tmp_path):
    got = export(sample_dataset, tmp_path / "ih", ("train", "val", "test"))
    root = tmp_path / "ih" / "PhraseHarmony"
    mapping = json.loads((root / "phraseharmony_export.json").read_text())
    rows = {r["sample_id"]: r for r in ds.dataset(sample_dataset / "data").to_table(
        columns=["sample_id", "split", "composite", "mask", "target"]).to_pylist()}
    assert got["rows"] == len(rows) == mapping["rows"] and mapping["complete"]
    source = open_source(tmp_path / "ih")
    assert isinstance(source, IHarmony4Source)
    for split in ("train", "test"):
        names = (root / f"PhraseHarmony_{split}.txt").read_text().split()
        want = {s for s, r in rows.items() if (r["split"] == "train") == (split == "train")}
        assert {mapping["samples"][n.rsplit("_", 2)[0]] for n in names} == want
        for unit in source.units(split):
            for row in source.read(unit, ()):
                comp, mask, real = IHarmony4Source.paths_for(row["sample_id"])   # HT's naming rule
                sample = rows[mapping["samples"][real.rsplit("/", 1)[1].removesuffix(".jpg")]]
                assert (row["composite"], row["mask"], row["target"]) == (
                    sample["composite"], sample["mask"], sample["target"])
    batch = next(Loader(source, "test", TrainData(size=256, workers=0), 4, 0, train=False).epoch(0))
    assert batch["composite"].shape[1:] == (3, 256, 256)
    # A second run writes nothing; another dataset's export in the folder is refused.
    again = export(sample_dataset, tmp_path / "ih", ("train", "val", "test"))
    assert again["written"] == 0 and again["unchanged"] == 3 * got["rows"]
    with pytest.raises(ExportError, match="holds an export of .* export into another folder"):
        export(sample_dataset, tmp_path / "ih", ("train",))


def test_a_killed_export_resumes_to_a_clean_export(sample_dataset, tmp_path):
    export(sample_dataset, tmp_path / "clean", ("train", "test"))
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, '.');"
                             "import tasks.publish.export_iharmony4 as e; from pathlib import Path;"
                             "orig = e._write_if_changed\n"
                             "def slow(p, d):\n    time.sleep(0.05); return orig(p, d)\n"
                             f"e._write_if_changed = slow; e.export(Path('{sample_dataset}'), "
                             f"Path('{tmp_path / 'killed'}'), ('train', 'test'))"],
                            cwd=REPO, env=env)
    deadline = time.time() + 60
    root = tmp_path / "killed" / "PhraseHarmony" / "real_images"
    while time.time() < deadline and (not root.exists() or len(list(root.iterdir())) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mapping = tmp_path / "killed" / "PhraseHarmony" / "phraseharmony_export.json"
    assert not json.loads(mapping.read_text())["complete"]
    resumed = export(sample_dataset, tmp_path / "killed", ("train", "test"))
    assert resumed["unchanged"] >= 5
    for a in sorted((tmp_path / "clean").rglob("*")):
        b = tmp_path / "killed" / a.relative_to(tmp_path / "clean")
        if a.is_file() and a.name != "phraseharmony_export.json":
            assert b.read_bytes() == a.read_bytes(), a
    assert not [p for p in (tmp_path / "killed").rglob("*.tmp*")]
