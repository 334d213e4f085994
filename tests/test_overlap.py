"""Visual Genome shares photos with COCO and Flickr, as do iHarmony4's HCOCO and HFlickr:
the manifest records the training photos' ids and evaluation can leave those out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_train_runs import cfg
from typer.testing import CliRunner

from conftest import make_iharmony4
from flows.cli import app
from schemas.train_config import TrainData
from tasks.publish.manifest import source_ids
from train.evaluate import evaluate
from train.loader import Loader
from train.loop import train
from train.overlap import photo_id
from train.sources import DataError, open_source


def test_ids_are_read_from_the_names():
    assert photo_id("HCOCO/composite_images/c100300_1602094_1.jpg") == ("coco_id", 100300)
    assert photo_id("HFlickr/composite_images/f3251_1_2.jpg") == ("flickr_id", 3251)
    assert photo_id("composite_images/c17_2_1.jpg") == ("coco_id", 17)   # HT's merged layout
    assert photo_id("HAdobe5k/composite_images/a0001_1_1.jpg") is None
    assert photo_id("HCOCO/composite_images/oddname.jpg") is None


def test_the_manifest_records_the_ids_of_each_splits_photos(sample_dataset):
    manifest = json.loads((sample_dataset / "_manifest.json").read_text())
    # The sample's photos are none of COCO's or Flickr's.
    assert manifest["source_ids"] == {s: {"coco_id": [], "flickr_id": []} for s in manifest["splits"]}
    # With records that name some, each split lists the ids of the photos its rows use.
    records = {9100001: {"coco_id": 11, "flickr_id": None}, 9100006: {"coco_id": 66, "flickr_id": 606},
               9100007: {"coco_id": None, "flickr_id": 707}}
    ids = source_ids(sample_dataset, manifest["shards"], records)
    assert ids == {"test": {"coco_id": [66], "flickr_id": [606]}, "train": {"coco_id": [11], "flickr_id": []},
                   "val": {"coco_id": [], "flickr_id": [707]}}


@pytest.fixture
def trained_on_known_ids(sample_copy, tmp_path) -> Path:
    """A run trained on a build whose training photos include COCO 101 and 105, Flickr 102."""
    path = sample_copy / "_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["source_ids"]["train"] = {"coco_id": [101, 105, 999], "flickr_id": [102]}
    path.write_text(json.dumps(manifest))
    train(cfg(sample_copy, tmp_path / "run", "steps=1", "val_every=1"), say=None)
    return tmp_path / "run"


def test_exclude_overlap_leaves_out_the_held_photos_per_sub_dataset(sample_dataset, trained_on_known_ids,
                                                                     tmp_path):
    ih = tmp_path / "ih"
    make_iharmony4(ih, sample_dataset, n=6)   # f100 c101 f102 c103 f104 c105
    plain = evaluate(trained_on_known_ids, ih, "test", tmp_path / "plain", workers=0)
    report = json.loads(Path(plain["metrics_json"]).read_text())
    assert report["metrics"]["by_recipe"]["HCOCO"]["n"] == 3 and not report["overlap"]["checked"]
    warning = "Warning: HCOCO, HFlickr may hold photos the training data held"
    assert warning in Path(plain["metrics_md"]).read_text()
    res = CliRunner().invoke(app, ["evaluate", str(trained_on_known_ids), "--data", str(ih), "--workers", "0",
                                   "--exclude-overlap", "--out", str(tmp_path / "clean")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    assert report["overlap"]["excluded"] == {"HCOCO": 2, "HFlickr": 1}
    assert {k: v["n"] for k, v in report["metrics"]["by_recipe"].items()} == {"HCOCO": 1, "HFlickr": 2}
    assert "Left out as photos the training data held: HCOCO 2, HFlickr 1." in res.output


def test_what_overlap_cannot_check_is_one_line(sample_dataset, sample_copy, trained_on_known_ids, tmp_path):
    with pytest.raises(DataError, match="--exclude-overlap leaves out iHarmony4 test images; this is a "
                                        "phraseharmony dataset"):
        evaluate(trained_on_known_ids, sample_dataset, "test", tmp_path / "e", workers=0,
                 exclude_overlap=True)
    ih = tmp_path / "ih"
    make_iharmony4(ih, sample_dataset, n=2)
    old = tmp_path / "old"
    shutil.copytree(sample_dataset, old)
    manifest = json.loads((old / "_manifest.json").read_text())
    del manifest["source_ids"]
    (old / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"_manifest.json: no source_ids \(built before they were recorded"):
        evaluate(trained_on_known_ids, ih, "test", tmp_path / "e", workers=0, exclude_overlap=True,
                 train_data=[old])


def test_hts_merged_layout_reads_the_same_rows(sample_dataset, tmp_path):
    split = tmp_path / "split"
    names = make_iharmony4(split, sample_dataset, n=4)
    merged = tmp_path / "merged"
    for folder in ("composite_images", "masks", "real_images"):
        (merged / folder).mkdir(parents=True)
        for sub in ("HCOCO", "HFlickr"):
            for f in (split / sub / folder).iterdir():
                shutil.copy(f, merged / folder / f.name)
    (merged / "IHD_test.txt").write_text("\n".join(Path(n).name for n in names) + "\n")

    def rows(root: Path) -> list[tuple]:
        loader = Loader(open_source(root), "test", TrainData(size=32, workers=0), 8, 0, train=False)
        batch = next(loader.epoch(0))
        return list(zip([Path(s).name for s in batch["sample_id"]], batch["recipe"],
                        batch["composite"].sum((1, 2, 3)).tolist(), batch["mask"].sum((1, 2, 3)).tolist()))

    assert rows(merged) == rows(split) and len(rows(split)) == 4


def test_a_bad_iharmony4_folder_is_one_line_or_counted_skips_naming_the_file(sample_dataset, tmp_path):
    import cv2
    import numpy as np

    empty = tmp_path / "empty"
    (empty / "HCOCO").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty: no IHD_test.txt and no <Sub>/<Sub>_test.txt list"):
        Loader(open_source(empty), "test", TrainData(size=32, workers=0), 4, 0, train=False)
    ih = tmp_path / "ih"
    names = make_iharmony4(ih, sample_dataset, n=4)   # f100 c101 f102 c103
    (ih / "HCOCO" / "real_images" / "c101.jpg").unlink()    # a composite without its real image
    ok, png = cv2.imencode(".png", np.zeros((7, 9), np.uint8))
    (ih / "HCOCO" / "masks" / "c103_3.png").write_bytes(png.tobytes())   # a mask of another size
    loader = Loader(open_source(ih), "test", TrainData(size=32, workers=0), 4, 0, train=False)
    assert [s for b in loader.epoch(0) for s in b["sample_id"]] == [names[0], names[2]]
    report = loader.take_skip_report()
    assert report["counts"] == {"missing_file": 1, "size_mismatch": 1}
    assert report["examples"]["missing_file"][0].startswith(f"{names[1]} (HCOCO/real_images/c101.jpg: ")
    assert report["examples"]["size_mismatch"] == [names[3]]
