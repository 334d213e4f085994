"""Broken records and images become counted skips; the flow still completes."""

import json
import shutil

import pytest

from conftest import build
from schemas.config import SAMPLE_ANNOTATIONS
from tasks.acquire.annotations import AnnotationError
from tasks.acquire.ledger import read_ledger
from tasks.acquire.sample_photos import materialize

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def broken_inputs(tmp_path):
    ann = tmp_path / "ann"
    shutil.copytree(SAMPLE_ANNOTATIONS, ann)
    tasks = json.loads((ann / "refer_train.json").read_text())
    del tasks[0]["Polygons"]                               # missing key
    tasks[1]["Polygons"][0][0][0] = [5000.0, 10.0]         # far outside its image
    tasks[2]["phrase_structure"] = "man"                   # wrong type
    (ann / "refer_train.json").write_text(json.dumps(tasks))
    photos = tmp_path / "photos"
    materialize(photos)
    (photos / "9100002.jpg").unlink()                      # missing image (the cat)
    data = (photos / "9100003.jpg").read_bytes()
    (photos / "9100003.jpg").write_bytes(data[: len(data) // 3])   # truncated JPEG
    return ann, photos


def test_skips_are_counted_by_reason_and_shown_on_the_card(broken_inputs, tmp_path):
    ann, photos = broken_inputs
    out = tmp_path / "out"
    summary = build(out, f"annotations.dir={ann}", "images.source=local", f"images.dir={photos}")
    assert summary["rows"] > 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["annotation_skips"]["counts"] == {"task_missing_key:Polygons": 1,
                                                      "task_bad_phrase_structure": 1}
    skips = manifest["skips"]["counts"]
    assert skips["polygon_far_outside_image"] == 1
    assert skips["image_missing"] == 3 and skips["image_corrupt"] == 3
    ledger = read_ledger(out / "images")
    assert ledger[9100002]["status"] == "missing" and ledger[9100003]["status"] == "corrupt"
    assert "error" in ledger[9100003]
    assert not (out / "images" / "9100003.jpg").exists()
    card = (out / "README.md").read_text()
    for reason in ("image_missing", "image_corrupt", "polygon_far_outside_image",
                   "task_missing_key:Polygons"):
        assert f"(`{reason}`)" in card
    # The image arrives later: its shard (only that one) is rebuilt on the next run.
    materialize(tmp_path / "fixed")
    shutil.copy(tmp_path / "fixed" / "9100002.jpg", photos / "9100002.jpg")
    again = build(out, f"annotations.dir={ann}", "images.source=local", f"images.dir={photos}")
    assert again["built"] == 1
    assert "image_missing" not in json.loads((out / "_manifest.json").read_text())["skips"]["counts"]


def test_annotation_file_that_is_not_a_list_is_a_clear_error(tmp_path):
    ann = tmp_path / "ann"
    shutil.copytree(SAMPLE_ANNOTATIONS, ann)
    (ann / "refer_val.json").write_text('{"oops": 1}')
    with pytest.raises(AnnotationError, match="refer_val.json: expected a JSON array"):
        build(tmp_path / "out", f"annotations.dir={ann}")


def test_missing_annotation_dir_names_the_file(tmp_path):
    with pytest.raises(AnnotationError, match="image_data_split.json: file not found"):
        build(tmp_path / "out", f"annotations.dir={tmp_path / 'nowhere'}")
