"""Regenerates the bundled sample annotations in VGPhraseCut's official format.

The photos are real ones that ship inside installed packages (see
``tasks/acquire/sample_photos.py``); the polygons below were drawn by hand over them, in
original-image pixels. Run ``python sample_data/build_sample.py`` after editing;
the JSON files it writes are what the pipeline reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent / "VGPhraseCut_v0"


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> list[list[float]]:
    return [[round(cx + rx * math.cos(2 * math.pi * k / n), 2),
             round(cy + ry * math.sin(2 * math.pi * k / n), 2)] for k in range(n)]


# image_id -> (photo key, width, height, split, coco_id); keys as in tasks/acquire/sample_photos.py
IMAGES = {
    9100001: ("astronaut", 512, 512, "train", None),
    9100002: ("chelsea", 451, 300, "train", None),
    9100003: ("coffee", 600, 400, "train", None),
    9100004: ("rocket", 640, 427, "train", None),
    9100005: ("motorcycle", 741, 500, "train", None),
    9100006: ("china", 640, 427, "test", None),
    9100007: ("flower", 640, 427, "val", None),
    9100008: ("grace_hopper", 512, 600, "train", None),
}

# (image_id, phrase, name, attributes, relations [(predicate, object)], instances)
# Each instance is a list of polygons; each polygon a list of [x, y].
PHRASES = [
    (9100001, "woman in orange spacesuit", "woman", [], [("in", "spacesuit")], [[[
        [150, 80], [160, 40], [190, 20], [235, 15], [280, 30], [300, 60], [298, 100],
        [285, 135], [280, 160], [300, 175], [305, 210], [310, 280], [345, 300], [360, 330], [365, 345],
        [320, 360], [290, 400], [275, 440], [280, 511], [30, 511], [25, 420], [30, 340],
        [50, 290], [100, 265], [120, 235], [115, 190], [135, 170], [160, 160], [152, 120]]]]),
    (9100001, "white helmet", "helmet", ["white"], [], [[[
        [278, 450], [290, 400], [320, 365], [365, 347], [410, 345], [450, 352], [485, 370],
        [505, 395], [511, 420], [511, 511], [285, 511]]]]),
    (9100001, "space shuttle model", "shuttle", [], [], [[[
        [410, 25], [420, 5], [432, 20], [438, 60], [440, 110], [442, 150], [450, 180],
        [468, 220], [470, 245], [455, 250], [445, 262], [440, 275], [425, 270], [420, 250],
        [402, 250], [385, 265], [370, 275], [360, 268], [368, 240], [380, 215], [395, 180],
        [400, 150], [403, 100], [405, 60]]]]),
    (9100001, "american flag", "flag", ["american"], [], [[[
        [0, 0], [60, 0], [75, 40], [85, 100], [95, 150], [100, 200], [112, 235], [100, 265],
        [50, 290], [30, 340], [25, 420], [30, 511], [0, 511]]]]),
    (9100001, "round patch", "patch", ["round"], [], [[ellipse(172, 384, 38, 38)]]),
    (9100002, "tabby cat", "cat", ["tabby"], [], [[[
        [30, 299], [20, 200], [30, 100], [50, 40], [60, 0], [360, 0], [400, 10], [395, 60],
        [420, 150], [410, 250], [390, 299]]]]),
    (9100002, "green eyes", "eye", ["green"], [], [
        [[[138, 105], [148, 92], [168, 86], [188, 90], [202, 102], [204, 120], [194, 137],
          [172, 145], [150, 138], [140, 124]]],
        [[[300, 122], [312, 112], [330, 110], [344, 120], [345, 140], [336, 157], [318, 163],
          [303, 152], [298, 138]]]]),
    (9100002, "pink nose", "nose", ["pink"], [], [[[
        [232, 232], [250, 226], [272, 226], [292, 232], [290, 242], [272, 252], [262, 265],
        [254, 262], [248, 250], [236, 242]]]]),
    (9100003, "white coffee cup", "cup", ["white"], [], [[[
        [176, 95], [185, 55], [215, 30], [260, 20], [310, 18], [360, 25], [395, 45],
        [412, 75], [414, 110], [405, 160], [390, 200], [370, 235], [345, 255], [300, 268],
        [255, 262], [250, 290], [232, 300], [205, 295], [195, 270], [198, 240], [212, 228],
        [200, 200], [186, 160]]]]),
    (9100003, "red saucer under cup", "saucer", ["red"], [("under", "cup")], [[[
        [78, 240], [95, 300], [140, 345], [210, 375], [290, 386], [370, 378], [430, 350],
        [468, 305], [478, 250], [470, 175], [450, 125], [420, 108], [414, 110], [405, 160],
        [390, 200], [370, 235], [345, 255], [300, 268], [255, 262], [250, 290], [232, 300],
        [205, 295], [195, 270], [198, 240], [212, 228], [200, 200], [186, 160], [176, 95],
        [150, 100], [110, 125], [85, 170]]]]),
    (9100003, "silver spoon", "spoon", ["silver"], [], [[[
        [405, 72], [412, 66], [422, 70], [418, 90], [408, 130], [395, 180], [386, 215],
        [385, 235], [398, 250], [405, 275], [402, 305], [388, 322], [365, 326], [340, 318],
        [328, 295], [330, 265], [345, 248], [368, 238], [376, 214], [386, 175], [398, 120]]]]),
    (9100004, "white rocket", "rocket", ["white"], [], [[[
        [315, 140], [321, 128], [328, 135], [333, 150], [333, 180], [336, 200], [336, 400],
        [330, 408], [312, 408], [308, 400], [309, 200], [311, 180], [311, 150]]]]),
    (9100004, "launch tower on left", "tower", [], [("on", "left")], [[[
        [0, 0], [88, 0], [86, 60], [78, 150], [70, 250], [60, 330], [48, 420], [0, 420]]]]),
    (9100004, "dark blue sky", "sky", ["dark", "blue"], [], [[[
        [96, 0], [555, 0], [555, 118], [96, 118]]]]),
    (9100005, "red motorcycle", "motorcycle", ["red"], [], [[[
        [92, 205], [110, 195], [140, 180], [150, 160], [200, 155], [260, 170], [320, 180],
        [340, 150], [360, 140], [390, 130], [420, 112], [470, 100], [500, 90], [520, 75],
        [525, 115], [560, 125], [575, 150], [560, 185], [545, 215], [560, 250], [600, 270],
        [640, 300], [670, 345], [680, 390], [670, 430], [640, 450], [600, 450], [570, 430],
        [545, 400], [520, 375], [470, 380], [400, 385], [350, 395], [340, 430], [325, 435],
        [320, 400], [300, 400], [260, 385], [220, 395], [180, 390], [145, 370], [125, 335],
        [120, 290], [130, 255], [100, 245], [92, 225]]]]),
    (9100005, "black seat", "seat", ["black"], [], [[[
        [150, 170], [175, 160], [230, 168], [290, 180], [340, 188], [355, 205], [330, 220],
        [280, 218], [230, 210], [180, 205], [152, 195]]]]),
    (9100005, "front wheel", "wheel", ["front"], [], [[ellipse(603, 370, 82, 85, 24)]]),
    (9100005, "round headlight", "headlight", ["round"], [], [[ellipse(537, 155, 28, 28)]]),
    (9100006, "chinese pagoda", "pagoda", ["chinese"], [], [[[
        [200, 30], [212, 32], [215, 60], [240, 80], [280, 100], [318, 118], [300, 135],
        [295, 160], [328, 172], [320, 185], [320, 240], [345, 245], [348, 260], [335, 270],
        [340, 300], [350, 320], [370, 335], [355, 350], [330, 365], [320, 390], [300, 395],
        [300, 426], [285, 426], [210, 385], [150, 370], [100, 360], [60, 340], [70, 320],
        [78, 290], [65, 275], [75, 250], [100, 240], [98, 195], [85, 180], [95, 165],
        [118, 160], [120, 135], [97, 130], [110, 100], [150, 90], [190, 60], [198, 40]]]]),
    (9100006, "green trees on right", "tree", ["green"], [("on", "right")], [[[
        [548, 250], [560, 180], [580, 150], [600, 138], [625, 135], [639, 140], [639, 426],
        [330, 426], [335, 380], [350, 345], [380, 310], [420, 295], [460, 285], [500, 285],
        [545, 275]]]]),
    (9100006, "calm lake", "lake", ["calm"], [], [[[
        [330, 222], [545, 222], [548, 250], [545, 275], [500, 283], [460, 285], [420, 295],
        [380, 305], [350, 320], [340, 300], [335, 270], [348, 258]]]]),
    (9100007, "orange dahlia", "flower", ["orange"], [], [[ellipse(307, 222, 137, 138, 28)]]),
    (9100007, "flower at bottom", "flower", [], [("at", "bottom")], [[[
        [290, 426], [295, 405], [320, 385], [345, 377], [375, 378], [400, 385], [430, 400],
        [455, 418], [460, 426]]]]),
    (9100008, "old woman wearing glasses", "woman", ["old"], [("wearing", "glasses")], [[[
        [150, 130], [160, 80], [180, 50], [230, 28], [290, 25], [335, 45], [355, 75],
        [365, 110], [372, 140], [360, 180], [355, 240], [345, 290], [330, 320], [400, 345],
        [470, 370], [511, 420], [511, 599], [20, 599], [30, 470], [50, 400], [110, 360],
        [175, 330], [160, 300], [165, 250], [155, 190]]]]),
    (9100008, "black navy cap", "cap", ["black", "navy"], [], [[[
        [148, 140], [150, 100], [175, 60], [210, 38], [260, 28], [300, 35], [340, 55],
        [360, 80], [370, 110], [372, 140], [340, 130], [300, 118], [250, 118], [200, 122],
        [165, 135]]]]),
    (9100008, "flag behind woman", "flag", [], [("behind", "woman")], [[[
        [0, 0], [230, 0], [215, 30], [180, 50], [160, 80], [150, 130], [155, 190], [165, 250],
        [160, 300], [175, 330], [110, 360], [50, 400], [30, 470], [20, 599], [0, 599]]]]),
    (9100008, "glasses", "glasses", [], [], [[[
        [172, 185], [200, 175], [240, 172], [262, 180], [285, 175], [320, 172], [352, 178],
        [355, 192], [335, 218], [300, 226], [275, 212], [255, 215], [232, 228], [195, 225],
        [178, 205]]]]),
]


def phrase_type(attributes: list, relations: list) -> str:
    if relations:
        return "relation"
    return "attribute" if attributes else "name"


def build() -> dict[str, list]:
    images = [
        {"image_id": iid, "coco_id": coco, "flickr_id": None, "width": w, "height": h,
         "url": f"https://example.invalid/VG_100K/{iid}.jpg", "split": split}
        for iid, (_, w, h, split, coco) in IMAGES.items()
    ]
    refer: dict[str, list] = {"train": [], "val": [], "test": []}
    ann_id = 9200001
    for iid, phrase, name, atts, rels, instances in PHRASES:
        ann_ids, boxes, polygons = [], [], []
        for inst in instances:
            pts = [p for poly in inst for p in poly]
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            boxes.append([float(min(xs)), float(min(ys)),
                          float(max(xs) - min(xs)), float(max(ys) - min(ys))])
            polygons.append([[[float(x), float(y)] for x, y in poly] for poly in inst])
            ann_ids.append(ann_id)
            ann_id += 1
        refer[IMAGES[iid][3]].append({
            "task_id": f"{iid}__" + "_".join(map(str, ann_ids)),
            "image_id": iid,
            "ann_ids": ann_ids,
            "instance_boxes": boxes,
            "Polygons": polygons,
            "phrase": phrase,
            "phrase_structure": {
                "name": name, "attributes": atts,
                "relation_ids": [ann_id * 10 + k for k in range(len(rels))],
                "relation_descriptions": [list(r) for r in rels],
                "type": phrase_type(atts, rels),
            },
        })
    return {"image_data_split": images, **{f"refer_{s}": t for s, t in refer.items()}}


if __name__ == "__main__":
    HERE.mkdir(parents=True, exist_ok=True)
    for stem, records in build().items():
        (HERE / f"{stem}.json").write_text(json.dumps(records, indent=1) + "\n")
        print(f"wrote {stem}.json ({len(records)} records)")
