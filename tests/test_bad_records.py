"""One bad record never fails or bloats the build: each is a counted skip with a reason,
within bounds the config states (annotations.limits, images.max_pixels)."""

import io
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, build, make_task
from schemas.config import SAMPLE_ANNOTATIONS, AnnotationLimits
from tasks.acquire.annotations import build_annotation_table
from tasks.acquire.downloader import verify_image
from tasks.acquire.json_stream import TOO_DEEP, iter_json_array


def _write(folder, images, **files):
    folder.mkdir(exist_ok=True)
    (folder / "image_data_split.json").write_text(json.dumps(images))
    for split, tasks in files.items():
        (folder / f"refer_{split}.json").write_text(tasks if isinstance(tasks, str) else json.dumps(tasks))


IMAGES = [{"image_id": 1, "width": 10, "height": 10, "split": "train"},
          {"image_id": 2, "width": 10, "height": 10, "split": "val"}]


def test_split_contradiction_and_cross_file_duplicates_are_skipped(tmp_path):
    _write(tmp_path, IMAGES,
           train=[make_task(), make_task(task_id="2__11", image_id=2)],          # val image in train file
           val=[make_task(task_id="2__12", image_id=2),
                make_task(task_id="1__10", image_id=2)])                     # id already in train
    table, _, skips, _ = build_annotation_table(tmp_path, ["train", "val"])
    assert sorted(zip(table["task_id"].to_pylist(), table["split"].to_pylist())) == [
        ("1__10", "train"), ("2__12", "val")]
    assert dict(skips.counts) == {"task_split_differs_from_image_split": 1, "task_duplicate_id": 1}
    assert skips.examples["task_duplicate_id"] == ["refer_val.json[1]"]


@pytest.mark.parametrize("task, reason", [
    (make_task(phrase_structure={"name": "ball", "attributes": [], "relation_descriptions": 7}),
     "task_bad_phrase_structure"),
    (make_task(phrase_structure={"name": "ball", "attributes": [3], "relation_descriptions": []}),
     "task_bad_phrase_structure"),
    (make_task(phrase="x" * 1_000_000), "task_phrase_too_long"),
    (make_task(ann_ids=list(range(2000)), Polygons=[[]] * 2000, instance_boxes=[]),
     "task_too_many_instances"),
    (make_task(Polygons=[[[[float(i), 1.0] for i in range(200_000)]]]), "task_too_many_points"),
])
def test_bad_tasks_are_counted_skips(tmp_path, task, reason):
    _write(tmp_path, IMAGES, train=[task, make_task(task_id="1__99", ann_ids=[99])])
    table, _, skips, _ = build_annotation_table(tmp_path, ["train"], AnnotationLimits())
    assert table["task_id"].to_pylist() == ["1__99"]
    assert dict(skips.counts) == {reason: 1}


def test_image_records_claiming_huge_sizes_are_skipped(tmp_path):
    images = IMAGES + [{"image_id": 3, "width": 2**31, "height": 1, "split": "train"},
                       {"image_id": 4, "width": 20000, "height": 20000, "split": "train"}]
    _write(tmp_path, images, train=[make_task(), make_task(task_id="3__1", image_id=3),
                                    make_task(task_id="4__1", image_id=4)])
    table, used, skips, _ = build_annotation_table(tmp_path, ["train"], max_pixels=40_000_000)
    assert table["task_id"].to_pylist() == ["1__10"] and list(used) == [1]
    assert skips.counts["image_too_large"] == 2
    assert skips.counts["task_image_record_skipped"] == 2


def test_deeply_nested_record_is_a_skip_in_bounded_memory(tmp_path):
    """82 KB of polygons nested 30,000 deep took 2.2 GB in ijson's item builder."""
    deep = "[" * 30000 + "[0.0, 1.0]" + "]" * 30000
    bad = json.dumps(make_task(task_id="1__1")).replace('"Polygons": [', '"Polygons": [' + deep + ", ", 1)
    _write(tmp_path, IMAGES, train="[" + bad + ", " + json.dumps(make_task()) + "]")
    # VmHWM: this process's peak (ru_maxrss would include the forking test process's).
    code = ("import json, re, sys; from pathlib import Path\n"
            "from schemas.config import AnnotationLimits\n"
            "from tasks.acquire.annotations import build_annotation_table\n"
            "t, _, s, _ = build_annotation_table(Path(sys.argv[1]), ['train'], AnnotationLimits())\n"
            "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "print(json.dumps([t['task_id'].to_pylist(), dict(s.counts), peak // 1024]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True,
                         text=True, check=True)
    ids, counts, peak_mib = json.loads(out.stdout)
    assert ids == ["1__10"] and counts == {"task_nested_too_deep": 1}
    assert peak_mib < 400, peak_mib


def test_bounded_reader_matches_json_and_marks_deep_values(tmp_path):
    objs = [{"a": 'x\\"[[[', "b": [[1.5, 2], {"c": None, "d": True}], "e": "\\\\"}, [], {}, "s]]", 3]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(objs))
    assert list(iter_json_array(path)) == objs
    assert list(iter_json_array(path, max_depth=1))[0] == {"a": 'x\\"[[[', "b": TOO_DEEP, "e": "\\\\"}


def _jpeg(h=60, w=80, seed=0):
    img = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_a_20000_square_jpeg_is_too_large_not_corrupt():
    data = bytearray(_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (20000).to_bytes(2, "big") * 2   # height, width in the header
    row = verify_image(bytes(data), (20000, 20000), 40_000_000)
    assert row["status"] == "too_large", row
    row = verify_image(bytes(data), (20000, 20000), 2**31 - 1)   # past PIL's own limit
    assert row["status"] == "too_large", row


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The same JPEG (same pixels) with an EXIF APP1 segment carrying ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_recorded_and_never_applied(prefect_server, tmp_path, orientation):
    """Polygons are in stored-pixel coordinates: a photo tagged to display rotated gives
    exactly the shard of the same photo untagged."""
    from tasks.acquire.ledger import read_ledger
    from tasks.acquire.sample_photos import materialize

    plain, tagged = tmp_path / "plain", tmp_path / "tagged"
    materialize(plain)
    shutil.copytree(plain, tagged)
    path = tagged / "9100004.jpg"
    path.write_bytes(with_orientation(path.read_bytes(), orientation))
    assert Image.open(path).getexif()[0x0112] == orientation
    outs = {}
    for name, photos in (("plain", plain), ("tagged", tagged)):
        outs[name] = tmp_path / f"out-{name}"
        build(outs[name], "annotations.splits=[train]", "images.source=local", f"images.dir={photos}")
    shard = "data/train/part-00001.parquet"   # images 9100003, 9100004
    assert (outs["plain"] / shard).read_bytes() == (outs["tagged"] / shard).read_bytes()
    assert read_ledger(outs["tagged"] / "images")[9100004]["exif_orientation"] == orientation
    assert "exif_orientation" not in read_ledger(outs["plain"] / "images")[9100004]


def test_symlink_planted_at_a_partial_file_is_not_written_through(tmp_path):
    from schemas.config import load_config
    from tasks.acquire.downloader import acquire_records
    from tasks.acquire.sample_photos import materialize

    photos = tmp_path / "photos"
    materialize(photos)
    cfg = load_config(None, ["images.source=local", f"images.dir={photos}"], tmp_path / "out")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    partial = cfg.images_dir / "_partial"
    partial.mkdir(parents=True)
    os.symlink(victim, partial / "9100001.part")
    os.symlink(victim, cfg.images_dir / "9100002.jpg")
    records = [{"image_id": i, "width": 1, "height": 1} for i in (9100001, 9100002)]
    counts = acquire_records(cfg, records)
    assert victim.read_text() == "precious"
    assert counts["ok"] == 2
    for i in (9100001, 9100002):
        assert not (cfg.images_dir / f"{i}.jpg").is_symlink()
        assert (cfg.images_dir / f"{i}.jpg").read_bytes() == (photos / f"{i}.jpg").read_bytes()


def test_broken_user_luts_are_named_on_the_card(prefect_server, tmp_path):
    from lut_library import builtin_luts
    from tasks.synthesize.luts import write_cube

    folder = tmp_path / "my_looks"
    folder.mkdir()
    write_cube(builtin_luts(17)["wb_3200k"], folder / "good.cube")
    (folder / "broken.cube").write_text("TITLE \"x\"\nLUT_3D_SIZE two\n0 0 0\n")
    (folder / "short.cube").write_text("LUT_3D_SIZE 2\n0 0 0\n1 1 1\n")
    out = tmp_path / "out"
    build(out, "annotations.splits=[val]", f"luts.user_dirs=[{folder}]")
    left_out = json.loads((out / "_manifest.json").read_text())["luts_left_out"]
    assert len(left_out) == 2
    assert left_out[0].startswith(f"{folder / 'broken.cube'}:2:")
    assert "short.cube" in left_out[1]
    card = (out / "README.md").read_text()
    assert all(p in card for p in left_out)


def test_bad_records_in_a_build_are_counted_on_the_card(prefect_server, tmp_path):
    ann = tmp_path / "ann"
    shutil.copytree(SAMPLE_ANNOTATIONS, ann)
    tasks = json.loads((ann / "refer_train.json").read_text())
    tasks[0]["phrase_structure"]["relation_descriptions"] = 7
    tasks[1]["phrase"] = "y" * 1_000_000
    (ann / "refer_train.json").write_text(json.dumps(tasks))
    images = json.loads((ann / "image_data_split.json").read_text())
    images[2].update(width=20000, height=20000)   # 9100003 claims 20000x20000
    (ann / "image_data_split.json").write_text(json.dumps(images))
    out = tmp_path / "out"
    summary = build(out, f"annotations.dir={ann}")
    assert summary["complete"] and summary["rows"] > 0
    skips = json.loads((out / "_manifest.json").read_text())["annotation_skips"]["counts"]
    assert skips == {"task_bad_phrase_structure": 1, "task_phrase_too_long": 1,
                     "image_too_large": 1, "task_image_record_skipped": 3}
    assert "(`task_phrase_too_long`)" in (out / "README.md").read_text()
    assert Image.open(io.BytesIO((out / "preview.png").read_bytes())).size[0] > 0
