"""The official VGPhraseCut rasterization, bit-exact, and the stored-mask rule."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from schemas.config import SAMPLE_ANNOTATIONS
from tasks.acquire.annotations import read_json_array
from tasks.synthesize.masks import degenerate_polygon_count, polygon_problem, polygons_to_mask, resize_mask


def official_reference(polygons, w, h):
    """Written from the description of PhraseCutDataset's utils/data_transfer.py:
    one canvas per polygon, int() truncation, PIL outline=1 fill=1, union by sum > 0."""
    acc = np.zeros((h, w))
    flat = [poly for instance in polygons for poly in instance]
    for poly in flat:
        if len(poly) < 2:
            continue
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).polygon([(int(x), int(y)) for x, y in poly], outline=1, fill=1)
        acc += np.array(img)
    return acc > 0


def sample_tasks():
    images = {r["image_id"]: r for r in read_json_array(SAMPLE_ANNOTATIONS / "image_data_split.json")}
    for split in ("train", "val", "test"):
        for t in read_json_array(SAMPLE_ANNOTATIONS / f"refer_{split}.json"):
            yield t, images[t["image_id"]]


def test_bit_exact_on_every_sample_task():
    n = 0
    for task, rec in sample_tasks():
        ours = polygons_to_mask(task["Polygons"], rec["width"], rec["height"])
        assert ours.dtype == bool and ours.shape == (rec["height"], rec["width"])
        assert np.array_equal(ours, official_reference(task["Polygons"], rec["width"], rec["height"]))
        assert ours.any()
        n += 1
    assert n == 27


def test_bit_exact_on_random_tasks():
    rng = np.random.default_rng(1234)
    for _ in range(2000):
        w, h = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        polygons = []
        for _inst in range(int(rng.integers(1, 3))):
            inst = []
            for _p in range(int(rng.integers(1, 3))):
                k = int(rng.integers(0, 7))  # includes 0-, 1- and 2-point polygons
                pts = rng.uniform(-0.3, 1.3, size=(k, 2)) * (w, h)
                inst.append(pts.tolist())
            polygons.append(inst)
        assert np.array_equal(polygons_to_mask(polygons, w, h), official_reference(polygons, w, h))


def test_two_point_polygon_is_a_line_and_one_point_is_skipped():
    line = polygons_to_mask([[[[1.7, 1.2], [8.9, 1.9]]]], 10, 4)
    assert line[1, 1:9].all() and line.sum() == 8
    assert not polygons_to_mask([[[[3.0, 3.0]]]], 10, 4).any()
    assert degenerate_polygon_count([[[[3.0, 3.0]], [[1, 1], [2, 2]], [[0, 0], [1, 0], [1, 1]]]]) == 2


@pytest.mark.parametrize("polygons, reason", [
    ([[]], "polygon_empty"),
    ([[[[0.0, 0.0], [float("nan"), 1.0], [3.0, 3.0]]]], "polygon_not_finite"),
    ([[[[0.0, 0.0], [500.0, 1.0], [3.0, 3.0]]]], "polygon_far_outside_image"),
    ([[[[2.0, 2.0]]]], "polygon_degenerate"),
    ([[[[0.0, 0.0], [105.0, -4.0], [3.0, 3.0]]]], None),  # slightly outside is fine
])
def test_polygon_problems(polygons, reason):
    assert polygon_problem(polygons, 100, 50) == reason


def test_resize_rule_is_area_threshold():
    full = np.zeros((4, 4), bool)
    full[:2, :2] = True          # top-left quarter
    full[2, 2] = True            # a quarter of the bottom-right 2x2 block
    small = resize_mask(full, 2, 2, threshold=0.5)
    assert small.tolist() == [[True, False], [False, False]]
    assert resize_mask(full, 2, 2, threshold=0.25)[1, 1]


def test_coco_rule_is_unbiased_where_the_official_one_grows():
    square = [[[[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0]]]]  # area 36
    official = polygons_to_mask(square, 10, 10)
    coco = polygons_to_mask(square, 10, 10, rule="coco")
    assert official.sum() == 49  # outline included: rows/cols 2..8
    assert abs(int(coco.sum()) - 36) <= 4 and not (coco & ~official).any()
    # Lines and points have no area under the unbiased rule.
    assert not polygons_to_mask([[[[1.7, 1.2], [8.9, 1.9]]]], 10, 4, rule="coco").any()
    with pytest.raises(ValueError, match="unknown mask rule"):
        polygons_to_mask(square, 10, 10, rule="nearest")


def test_coco_rule_area_tracks_polygon_area_on_sample_tasks():
    images = {r["image_id"]: r for r in read_json_array(SAMPLE_ANNOTATIONS / "image_data_split.json")}
    for task in read_json_array(SAMPLE_ANNOTATIONS / "refer_train.json")[:10]:
        rec = images[task["image_id"]]
        poly = np.asarray(task["Polygons"][0][0])
        x, y = poly[:, 0], poly[:, 1]
        shoelace = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        coco = polygons_to_mask([[task["Polygons"][0][0]]], rec["width"], rec["height"], rule="coco")
        official = polygons_to_mask([[task["Polygons"][0][0]]], rec["width"], rec["height"])
        assert abs(coco.sum() - shoelace) <= abs(official.sum() - shoelace)


def test_coverage_rule_agrees_with_opencv_area_when_shrinking():
    """The summed-area-table coverage equals OpenCV's INTER_AREA coverage (an independent
    implementation of the same rule) on random polygons, pixel for pixel."""
    import cv2

    rng = np.random.default_rng(7)
    for _ in range(60):
        w, h = (int(v) for v in rng.integers(257, 1000, 2))
        polygon = (rng.uniform(-0.05, 1.05, (int(rng.integers(3, 12)), 2)) * [w, h]).tolist()
        full = polygons_to_mask([[polygon]], w, h)
        ours = resize_mask(full, 256, 256)
        theirs = cv2.resize(full.astype(np.float32), (256, 256), interpolation=cv2.INTER_AREA) >= 0.5
        assert np.array_equal(ours, theirs)


def test_coverage_rule_when_enlarging_is_exact_area():
    full = np.zeros((3, 3), bool)
    full[1, 1] = True
    big = resize_mask(full, 9, 9)  # each source pixel covers a 3x3 block exactly
    assert big.sum() == 9 and big[3:6, 3:6].all()
    assert resize_mask(full, 6, 6, threshold=0.5).sum() == 4
