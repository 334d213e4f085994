import json

import pytest

from conftest import make_task
from schemas.config import SAMPLE_ANNOTATIONS
from tasks.acquire.annotations import (
    IMAGE_KEYS,
    TASK_KEYS,
    AnnotationError,
    SkipLog,
    build_annotation_table,
    read_json_array,
    task_rows,
)


def test_sample_files_follow_the_official_format():
    images = json.loads((SAMPLE_ANNOTATIONS / "image_data_split.json").read_text())
    assert isinstance(images, list) and len(images) == 8
    assert all(set(rec) == set(IMAGE_KEYS) for rec in images)
    ids = {r["image_id"] for r in images}
    n_tasks = 0
    for split in ("train", "val", "test"):
        tasks = json.loads((SAMPLE_ANNOTATIONS / f"refer_{split}.json").read_text())
        for t in tasks:
            n_tasks += 1
            assert set(t) == set(TASK_KEYS)
            assert t["task_id"] == f"{t['image_id']}__" + "_".join(map(str, t["ann_ids"]))
            assert t["image_id"] in ids
            assert len(t["Polygons"]) == len(t["ann_ids"]) == len(t["instance_boxes"])
            assert set(t["phrase_structure"]) == {"name", "attributes", "relation_ids",
                                                  "relation_descriptions", "type"}
            for inst, box in zip(t["Polygons"], t["instance_boxes"]):
                pts = [p for poly in inst for p in poly]
                assert all(isinstance(c, float) for p in pts for c in p)
                assert box[0] == min(p[0] for p in pts) and box[1] == min(p[1] for p in pts)
    assert n_tasks >= 16


def test_written_table_is_sorted_and_complete(tmp_path):
    from tasks.acquire.annotations import read_annotation_table, write_annotation_table

    table, images, skips, hashes = build_annotation_table(SAMPLE_ANNOTATIONS, ("train", "val", "test"))
    assert not skips.counts and len(images) == 8 and len(hashes) == 4
    write_annotation_table(table, tmp_path / "a.arrow")
    back = read_annotation_table(tmp_path / "a.arrow")
    keys = list(zip(back["image_id"].to_pylist(), back["task_id"].to_pylist()))
    assert keys == sorted(keys) and back.num_rows == table.num_rows == 27


def test_not_a_json_array_names_the_file(tmp_path):
    path = tmp_path / "refer_train.json"
    path.write_text('{"task_id": "1__2"}')
    with pytest.raises(AnnotationError, match="refer_train.json.*JSON array"):
        read_json_array(path)
    path.write_text("[{broken")
    with pytest.raises(AnnotationError, match="refer_train.json.*not valid JSON"):
        read_json_array(path)


def test_bad_tasks_are_counted_skips_with_file_and_index():
    images = {1: {"image_id": 1, "width": 10, "height": 10, "split": "train"}}
    bad_missing = make_task()
    del bad_missing["Polygons"]
    tasks = [make_task(), bad_missing, make_task(task_id="1__11", image_id="1"), "not a dict",
             make_task(task_id="1__12", Polygons=[[[[0.0, float("nan")], [1.0, 1.0]]]]),
             make_task(task_id="1__13", image_id=99), make_task()]
    skips = SkipLog()
    rows = task_rows(tasks, images, "train", "refer_train.json", skips)
    assert [r["task_id"] for r in rows] == ["1__10"]
    assert dict(skips.counts) == {"task_missing_key:Polygons": 1, "task_bad_id": 1,
                                  "task_not_an_object": 1, "polygon_not_finite": 1,
                                  "task_image_not_in_split_file": 1, "task_duplicate_id": 1}
    assert skips.examples["task_missing_key:Polygons"] == ["refer_train.json[1]"]


def test_bad_image_records_are_skipped(tmp_path):
    recs = [{"image_id": 1, "width": 10, "height": 10, "split": "train"},
            {"image_id": 1, "width": 10, "height": 10, "split": "train"},
            {"image_id": -3, "width": 10, "height": 10, "split": "train"},
            {"image_id": 2, "width": 0, "height": 10, "split": "train"},
            {"image_id": 3, "height": 10, "split": "train"}]
    (tmp_path / "image_data_split.json").write_text(json.dumps(recs))
    (tmp_path / "refer_train.json").write_text(json.dumps([make_task()]))
    table, images, skips, _ = build_annotation_table(tmp_path, ["train"])
    assert list(images) == [1] and table.num_rows == 1
    assert dict(skips.counts) == {"image_duplicate_id": 1, "image_bad_id": 1,
                                  "image_bad_size": 1, "image_missing_key:width": 1}


def test_streaming_reader_matches_json_load_and_names_broken_files(tmp_path):
    from tasks.acquire.annotations import iter_json_array

    records = [make_task(task_id=f"1__{i}", ann_ids=[i]) for i in range(3000)]
    path = tmp_path / "refer_train.json"
    path.write_text(json.dumps(records))
    assert list(iter_json_array(path)) == json.loads(path.read_text())
    path.write_text(json.dumps(records)[:-5000])            # cut mid-record
    with pytest.raises(AnnotationError, match="refer_train.json: not valid JSON"):
        list(iter_json_array(path))
    path.write_text("   ")
    with pytest.raises(AnnotationError, match="refer_train.json: expected a JSON array.*nothing"):
        list(iter_json_array(path))
    assert list(iter_json_array(_write_bytes(tmp_path, b"\xef\xbb\xbf[1, 2.5]"))) == [1, 2.5]


def _write_bytes(tmp_path, data):
    path = tmp_path / "bom.json"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("polys, reason", [
    ([[[[0, 0], [1.5, 2], [3, 1]]]], None),
    ([[[]]], None),
    ([[[["0", "1"], [1, 2], [3, 4]]]], "task_bad_polygons"),       # strings are not numbers
    ([[[[True, False], [True, True], [False, True]]]], "task_bad_polygons"),  # nor booleans
    ([[[[0, 0, 0], [1, 2, 3]]]], "task_bad_polygons"),             # not [x, y]
    ([[[[0, 0], [1]]]], "task_bad_polygons"),                     # ragged
    ([[[[0, float("inf")], [1, 2], [3, 4]]]], "polygon_not_finite"),
    ([["not a polygon"]], "task_bad_polygons"),
])
def test_clean_polygons(polys, reason):
    from tasks.acquire.annotations import clean_polygons

    out = clean_polygons(polys)
    assert (out if isinstance(out, str) else None) == reason
    if reason is None:
        assert out == [[[[float(x), float(y)] for x, y in p] for p in inst] for inst in polys]
