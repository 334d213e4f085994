"""Test photos the training data held: Visual Genome shares photos with COCO and Flickr,
and so do iHarmony4's HCOCO and HFlickr.

A build's manifest lists, per split, the ``coco_id`` and ``flickr_id`` of the photos
its rows were made from (``tasks.publish.manifest.source_ids``). An iHarmony4 composite names
its source photo: ``HCOCO/composite_images/c<coco_id>_<mask>_<k>.jpg`` (HCOCO was cut
from COCO with COCO's instance masks) and ``HFlickr/.../f<id>_<mask>_<k>.jpg``, read here
as the Flickr photo id. That second reading is not documented by the dataset's authors:
a check that finds no HFlickr match says so instead of reporting a clean test set.
HAdobe5k (MIT-Adobe FiveK) and Hday2night (AMOS webcams) share no photos with Visual
Genome. A DoveNet transfer's reference photo lends only its colour statistics and is not
counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from train.sources import MANIFEST_NAME, DataError, IHarmony4Source, is_iharmony4

# Sub-dataset -> (the id its file names carry, the manifest's list of them).
NAMED_BY = {"HCOCO": ("c", "coco_id"), "HFlickr": ("f", "flickr_id")}


def photo_id(name: str) -> tuple[str, int] | None:
    """``HCOCO/composite_images/c100300_1602094_1.jpg`` -> ("coco_id", 100300)."""
    sub = IHarmony4Source.sub_of(name)
    if sub not in NAMED_BY:
        return None
    letter, key = NAMED_BY[sub]
    m = re.fullmatch(rf"{letter}(\d+)_.+", Path(name).name)
    return (key, int(m.group(1))) if m else None


def training_dirs(cfg) -> list[Path]:
    """The builds a run of ``cfg`` (a TrainConfig) trained on (iHarmony4 roots left out)."""
    dirs = [p.dir for p in cfg.data.sources] if cfg.data.sources else [cfg.data.dir]
    return [Path(d) for d in dirs if not is_iharmony4(Path(d))]


def held_ids(dirs: list[Path], split: str) -> dict[str, set[int]]:
    """The coco_id and flickr_id sets of ``split`` across the builds in ``dirs``."""
    held: dict[str, set[int]] = {"coco_id": set(), "flickr_id": set()}
    for root in dirs:
        path = root / MANIFEST_NAME
        try:
            ids = json.loads(path.read_text())["source_ids"]
        except FileNotFoundError:
            raise DataError(f"{path}: not found, so the photos training held are unknown (pass the "
                            "training data with --train-data)") from None
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"{path}: no source_ids (built before they were recorded: rebuild it with "
                            "`phraseharmony build`, which rewrites only the manifest)") from None
        for key, held_here in held.items():
            held_here.update(ids.get(split, {}).get(key, []))
    return held


def overlapping(names: list[str], held: dict[str, set[int]]) -> list[str]:
    """The names whose source photo is in ``held``."""
    out = []
    for name in names:
        found = photo_id(name)
        if found is not None and found[1] in held[found[0]]:
            out.append(name)
    return out


def overlap_note(names: list[str], dropped: list[str] | None, dirs: list[Path]) -> dict[str, Any]:
    """What a report says of overlap: the images left out per sub-dataset, or a warning."""
    subs = Counter(IHarmony4Source.sub_of(n) for n in names)
    at_risk = sorted(s for s in subs if s in NAMED_BY)
    if dropped is None:
        if not at_risk or not dirs:
            return {}
        return {"checked": False, "warning": f"{', '.join(at_risk)} may hold photos the training data held "
                                             "(Visual Genome shares COCO and Flickr photos); "
                                             "evaluate with --exclude-overlap"}
    gone = Counter(IHarmony4Source.sub_of(n) for n in dropped)
    note: dict[str, Any] = {"checked": True, "training_data": [str(d) for d in dirs],
                            "excluded": {s: gone.get(s, 0) for s in at_risk}}
    if "HFlickr" in subs and not gone.get("HFlickr"):
        note["warning"] = ("no HFlickr image matched: its f<N> names are read as Flickr photo ids, "
                           "which the dataset does not document; the check may have missed overlap")
    return note


def overlap_lines(note: dict[str, Any] | None) -> str:
    """The report's lines on overlap (empty when there is nothing to say)."""
    if not note:
        return ""
    lines = [""]
    if note.get("checked"):
        lines.append("Left out as photos the training data held: " + ", ".join(
            f"{sub} {n}" for sub, n in note["excluded"].items()) + ".")
    if note.get("warning"):
        lines.append(f"Warning: {note['warning']}.")
    return "\n".join(lines) + "\n"
