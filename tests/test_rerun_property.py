"""A rerun equals a clean build of the current inputs, whatever changed, and redoes only
the shards the change touches (DESIGN.md: every done-marker digests everything its
shard is made from). One base build; each edit is applied to a copy of it and of its
inputs, rebuilt incrementally, and compared with a clean build of the edited inputs."""

import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import build
from schemas.config import SAMPLE_ANNOTATIONS
from tasks.acquire.sample_photos import materialize

pytestmark = pytest.mark.usefixtures("prefect_server")

BROKEN_TASK = "9100001__9200001"   # base: its Polygons key is missing (a counted skip)
TRUNCATED = 9100008                 # base: truncated photo; a reference for train-00000


def _read(ann, name):
    return json.loads((ann / name).read_text())


def _write(ann, name, data):
    (ann / name).write_text(json.dumps(data))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Inputs with one broken task and one truncated photo, and their incremental build."""
    root = tmp_path_factory.mktemp("rerun")
    ann, photos = root / "ann", root / "photos"
    shutil.copytree(SAMPLE_ANNOTATIONS, ann)
    tasks = _read(ann, "refer_train.json")
    original = next(t for t in tasks if t["task_id"] == BROKEN_TASK)
    (root / "broken_task.json").write_text(json.dumps(original))
    del original["Polygons"]
    _write(ann, "refer_train.json", tasks)
    materialize(photos)
    good = (photos / f"{TRUNCATED}.jpg").read_bytes()
    (root / "good_photo.jpg").write_bytes(good)
    (photos / f"{TRUNCATED}.jpg").write_bytes(good[: len(good) // 2])
    out = root / "out"
    build(out, *_overrides(ann, photos))
    return root


def _overrides(ann, photos, *extra):
    return [f"annotations.dir={ann}", "images.source=local", f"images.dir={photos}", *extra]


def _restore_task(root, ann, photos):
    tasks = _read(ann, "refer_train.json")
    fixed = json.loads((root / "broken_task.json").read_text())
    _write(ann, "refer_train.json", [fixed if t["task_id"] == BROKEN_TASK else t for t in tasks])


def _add_task(root, ann, photos):
    tasks = _read(ann, "refer_train.json")
    new = json.loads(json.dumps(next(t for t in tasks if t["task_id"] == "9100003__9200010")))
    new.update(task_id="9100003__9299999", ann_ids=[9299999], phrase="small white mug")
    new["phrase_structure"]["name"] = "mug"
    _write(ann, "refer_train.json", tasks + [new])


def _fix_photo(root, ann, photos):
    shutil.copy(root / "good_photo.jpg", photos / f"{TRUNCATED}.jpg")


def _rephrase(root, ann, photos):
    tasks = _read(ann, "refer_train.json")
    for t in tasks:
        if t["task_id"] == "9100004__9200013":
            t["phrase"] = "tall white rocket"
    _write(ann, "refer_train.json", tasks)


def _move_val_image_to_train(root, ann, photos):
    images = _read(ann, "image_data_split.json")
    for rec in images:
        if rec["image_id"] == 9100007:
            rec["split"] = "train"
    _write(ann, "image_data_split.json", images)


def _delete_task(root, ann, photos):
    tasks = _read(ann, "refer_train.json")
    _write(ann, "refer_train.json", [t for t in tasks if t["task_id"] != "9100005__9200016"])


def _reencode_photo(root, ann, photos):
    path = photos / "9100004.jpg"
    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    path.write_bytes(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())


def _user_luts(root, ann, photos):
    from tasks.synthesize.luts import Lut3D, write_cube

    folder = root / "my_looks"
    folder.mkdir(exist_ok=True)
    look = Lut3D.from_function(lambda x: np.stack([x[:, 0] ** 0.6, x[:, 1] * 0.7,
                                                   np.clip(x[:, 2] * 1.3, 0, 1)], axis=1),
                               size=9, title="warm punch")
    write_cube(look, folder / "punch.cube")
    return [f"luts.user_dirs=[{folder}]"]


def _config(root, ann, photos):
    return ["synthesis.strength_min=0.95"]


def _shards_trying(out, image_id):
    """Shards whose marker says they read ``image_id`` as a reference."""
    return {p.stem for p in (out / "_done").glob("*.json")
            if any(i == image_id for i, _ in json.loads(p.read_text())["references"])}


# edit -> the shards it must rebuild (None: computed from the base's markers)
EDITS = {
    "restore_skipped_task": (_restore_task, {"train-00000", "train-00002"}),  # + "woman" group
    "add_task": (_add_task, {"train-00001"}),
    "fix_truncated_reference_photo": (_fix_photo, None),
    "rephrase_task": (_rephrase, {"train-00001"}),
    "move_image_to_other_split": (_move_val_image_to_train, set()),
    "delete_task": (_delete_task, {"train-00002"}),
    "reencode_photo": (_reencode_photo, {"train-00001"}),
    "add_user_luts": (_user_luts, "all"),
    "change_config": (_config, "all"),
}


def _outputs(out):
    files = {p.relative_to(out).as_posix(): p.read_bytes()
             for p in sorted((out / "data").rglob("*")) if p.is_file()}
    markers = sorted(p.name for p in (out / "_done").iterdir())
    return files, markers, (out / "_manifest.json").read_bytes()


def _built(out, before):
    return {p.stem for p in (out / "_done").glob("*.json")
            if p.stat().st_mtime_ns != before.get(p.stem)}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_rerun_equals_clean_build(base, tmp_path, edit):
    apply, expected = EDITS[edit]
    ann, photos, out = tmp_path / "ann", tmp_path / "photos", tmp_path / "out"
    shutil.copytree(base / "ann", ann)
    shutil.copytree(base / "photos", photos)
    shutil.copytree(base / "out", out)
    for name in ("broken_task.json", "good_photo.jpg"):
        shutil.copy(base / name, tmp_path / name)
    if expected is None:
        expected = {f"train-{i:05d}" for i in (2,)} | _shards_trying(out, TRUNCATED)
    before = {p.stem: p.stat().st_mtime_ns for p in (out / "_done").glob("*.json")}
    extra = apply(tmp_path, ann, photos) or []

    summary = build(out, *_overrides(ann, photos, *extra))
    clean = tmp_path / "clean"
    build(clean, *_overrides(ann, photos, *extra))
    assert _outputs(out) == _outputs(clean)
    rebuilt = _built(out, before)
    if expected == "all":
        assert summary["built"] == summary["shards"] == len(rebuilt)
    else:
        assert rebuilt == expected and summary["built"] == len(expected)
    # and a third run does nothing
    assert build(out, *_overrides(ann, photos, *extra))["built"] == 0
