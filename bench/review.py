"""Review composites as a harmonization researcher does: blind sheets from one or more builds.

    .venv/bin/python bench/review.py build OUT [--images 104] [--inputs DIR] [--set KEY=VALUE ...]
    .venv/bin/python bench/review.py sheets OUT_A [OUT_B ...] --dest DIR [--per-recipe 8]
        [--phrases P ...] [--paired [--changed]]

``build`` makes ``bench/stages.py``'s replicated input (the bundled sample's photos,
each replica graded by a photographic look) and builds it with the checkout's code and
every recipe at equal weight. ``sheets`` draws ``--per-recipe`` random rows per recipe
from each build, shuffles them together (the reviewer does not know which build a row
comes from) and writes numbered sheets, 8 rows each: composite | target | the mask's
outline on the target | 4x |composite - target|, 256 px, and ``zoom/NNN.png``: each row's
region, composite | target, at 3x (raters who enlarge agree far better: docs/realism.md,
round 13). ``key.csv`` says which build and row each number is (move it out of the
folder before raters see it); each reviewer writes one verdict per number (plausible,
no_op, absurd, artifact) and ``bench/review.py score key.csv verdicts.csv [more.csv ...]``
prints the shares (with several raters: their agreement and the majority's shares).
``--paired --changed`` judges a change where it touched: the samples the second build
makes otherwise (another composite, or none) beside its rows of them.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EQUAL = {"lut_pair": 1.0, "lut_fg": 1.0, "reinhard": 1.0, "xiao_rgb": 1.0, "hist_ycbcr": 1.0, "idt": 1.0}
VERDICTS = ("plausible", "no_op", "absurd", "artifact")


def build(out: Path, images: int, inputs: Path | None, extra: list[str] | None = None) -> None:
    """Build the replicated input with every recipe at equal weight. ``inputs``: a folder
    holding (or to hold) the input, so two checkouts' builds read the very same photos;
    ``extra``: more config overrides (``--set`` values)."""
    from bench.stages import make_input

    work = inputs or Path(tempfile.mkdtemp(prefix="ph-review-"))
    try:
        ann, photos = work / "ann", work / "photos"
        if not (ann / "refer_train.json").exists():
            ann, photos = make_input(work, images)
        sets = [f"annotations.dir={ann}", "annotations.splits=[train]", "images.source=local",
                f"images.dir={photos}", "shards.images_per_shard=200", "captions.enabled=false",
                f"synthesis.recipes={json.dumps(EQUAL)}", *(extra or [])]
        subprocess.run([sys.executable, "-m", "flows.cli", "build", "--config",
                        str(ROOT / "configs" / "sample.yaml"), "--out", str(out),
                        *[a for s in sets for a in ("--set", s)]], cwd=ROOT, check=True)
    finally:
        if inputs is None:
            shutil.rmtree(work, ignore_errors=True)


def _rows(out: Path, where=None) -> list[dict]:
    """A build's rows (``where``: a pyarrow filter, applied while reading: only the rows
    it keeps are decoded)."""
    import pyarrow.dataset as ds

    return ds.dataset(out / "data").to_table(columns=["sample_id", "recipe", "phrase", "target",
                                                       "composite", "mask"], filter=where).to_pylist()


def _labelled(img: np.ndarray, label: str) -> np.ndarray:
    """``label`` (the row's number) written at the top left, yellow on black."""
    import cv2

    if label:
        cv2.rectangle(img, (0, 0), (9 * len(label) + 6, 16), (0, 0, 0), -1)
        cv2.putText(img, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
    return img


def review_row(target: np.ndarray, composite: np.ndarray, mask: np.ndarray, label: str = "") -> np.ndarray:
    """composite | target | outline on the target | 4x difference, each 256 px."""
    import cv2

    outline = target.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(outline, contours, -1, (0, 255, 0), 1)
    diff = np.clip(np.abs(composite.astype(np.int16) - target.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
    row = np.concatenate([composite, target, outline, diff], axis=1)
    return _labelled(row, label)


def _changed_ids(first: Path, other: Path) -> list[str]:
    """The sample ids whose composite ``other`` does not make as ``first`` does (another
    composite, or none): the rows a change touched."""
    import pyarrow.dataset as ds

    theirs = {r["sample_id"]: r["composite"] for r in
              ds.dataset(other / "data").to_table(columns=["sample_id", "composite"]).to_pylist()}
    ours = ds.dataset(first / "data").to_table(columns=["sample_id", "composite"]).to_pylist()
    return sorted(r["sample_id"] for r in ours if theirs.get(r["sample_id"]) != r["composite"])


def zoomed(target: np.ndarray, composite: np.ndarray, mask: np.ndarray, label: str = "",
           scale: int = 3, margin: int = 12) -> np.ndarray:
    """composite | target around the mask's box (plus ``margin``), enlarged ``scale`` times
    without smoothing: the seams and fringes a 256-px panel hides, the same for every rater."""
    import cv2

    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + margin + 1)
    pair = np.concatenate([composite[y0:y1, x0:x1], np.zeros((y1 - y0, 2, 3), np.uint8),
                           target[y0:y1, x0:x1]], axis=1)
    big = cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return _labelled(big, label)


def sheets(builds: list[Path], dest: Path, per_recipe: int, seed: int,
           recipes: list[str] | None = None, phrases: list[str] | None = None,
           paired: bool = False, changed: bool = False) -> None:
    """``paired``: the rows drawn from the first build, and each other build's row of
    the same sample id (where it has one): a change judged on the same samples.
    ``changed`` (paired): drawn only among the samples the second build does not make as
    the first does. Beside the sheets, ``zoom/NNN.png`` shows each row's region enlarged."""
    import cv2
    import pyarrow.dataset as ds

    where = None
    if changed:
        if not paired or len(builds) < 2:
            raise SystemExit("--changed compares two builds: give both, with --paired")
        where = ds.field("sample_id").isin(_changed_ids(builds[0], builds[1]))
    for column, wanted in (("recipe", recipes), ("phrase", phrases)):
        if wanted:
            keep = ds.field(column).isin(wanted)
            where = keep if where is None else where & keep
    rng = np.random.default_rng(seed)
    picked = []
    for b, out in enumerate(builds[:1] if paired else builds):
        by_recipe = defaultdict(list)
        for r in _rows(out, where):
            by_recipe[r["recipe"]].append(r)
        for recipe in sorted(by_recipe):
            rows = by_recipe[recipe]
            for i in rng.choice(len(rows), size=min(per_recipe, len(rows)), replace=False):
                picked.append((b, rows[int(i)]))
    if paired:
        ids = {r["sample_id"] for _b, r in picked}
        for b, out in enumerate(builds[1:], start=1):
            picked += [(b, r) for r in _rows(out, ds.field("sample_id").isin(sorted(ids)))]
    order = rng.permutation(len(picked))
    (dest / "zoom").mkdir(parents=True, exist_ok=True)

    def dec(data, flags=cv2.IMREAD_COLOR):
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)

    with open(dest / "key.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n", "build", "sample_id", "recipe"])
        cells = []
        for n, k in enumerate(order):
            b, r = picked[int(k)]
            w.writerow([n, str(builds[b]), r["sample_id"], r["recipe"]])
            target, comp = dec(r["target"])[..., ::-1], dec(r["composite"])[..., ::-1]
            mask = dec(r["mask"], cv2.IMREAD_GRAYSCALE) > 0
            cells.append(review_row(target, comp, mask, f"#{n}"))
            cv2.imwrite(str(dest / "zoom" / f"{n:03d}.png"), zoomed(target, comp, mask, f"#{n}")[..., ::-1])
    for s in range(0, len(cells), 8):
        cv2.imwrite(str(dest / f"sheet-{s // 8:02d}.png"), np.concatenate(cells[s:s + 8], axis=0)[..., ::-1])
    print(f"{len(cells)} rows on {(len(cells) + 7) // 8} sheets in {dest}; key in {dest / 'key.csv'}")


def _read_verdicts(path: Path) -> dict[int, str]:
    got = {int(r["n"]): r["verdict"] for r in csv.DictReader(path.open())}
    for n, v in got.items():
        if v not in VERDICTS:
            raise SystemExit(f"{path}: row {n} has verdict {v!r}; want one of {VERDICTS}")
    return got


def _table(keys: dict, got: dict[int, str], title: str) -> dict:
    table: dict = defaultdict(lambda: defaultdict(Counter))
    for n, v in got.items():
        table[keys[n]["build"]][keys[n]["recipe"]][v] += 1
        table[keys[n]["build"]]["all"][v] += 1
    for build_name, recipes in table.items():
        print(f"\n{title}: {build_name}\n| recipe | n | " + " | ".join(VERDICTS) + " |")
        print("|---|---|" + "---|" * len(VERDICTS))
        for recipe in sorted(recipes, key=lambda r: (r == "all", r)):
            c = recipes[recipe]
            n = sum(c.values())
            print(f"| {recipe} | {n} | " + " | ".join(f"{c[v] / n:.0%}" for v in VERDICTS) + " |")
    return table


def kappa(a: dict[int, str], b: dict[int, str]) -> tuple[float, float]:
    """(share of rows two raters gave the same verdict, Cohen's kappa) over their common rows."""
    rows = sorted(set(a) & set(b))
    agree = sum(a[n] == b[n] for n in rows) / len(rows)
    ca, cb = Counter(a[n] for n in rows), Counter(b[n] for n in rows)
    chance = sum(ca[v] * cb[v] for v in VERDICTS) / len(rows) ** 2
    return agree, (agree - chance) / (1 - chance) if chance < 1 else 1.0


def score(key: Path, *verdicts: Path) -> dict:
    """Shares of each verdict per build and recipe (verdicts.csv: n,verdict[,note]). With
    several raters' files: each one's table, their pairwise agreement (Cohen's kappa),
    and the table of the rows a majority agrees on (the others counted as split)."""
    keys = {int(r["n"]): r for r in csv.DictReader(key.open())}
    raters = [_read_verdicts(v) for v in verdicts]
    tables = [_table(keys, got, str(path)) for got, path in zip(raters, verdicts)]
    if len(raters) < 2:
        return tables[0]
    print()
    for i in range(len(raters)):
        for j in range(i + 1, len(raters)):
            agree, k = kappa(raters[i], raters[j])
            print(f"{verdicts[i].name} vs {verdicts[j].name}: the same verdict on {agree:.0%} of rows, "
                  f"Cohen's kappa {k:.2f}")
    majority = {}
    for n in set.intersection(*(set(r) for r in raters)):
        (v, c), = Counter(r[n] for r in raters).most_common(1)
        if c * 2 > len(raters):
            majority[n] = v
    split = len(set.intersection(*(set(r) for r in raters))) - len(majority)
    print(f"\nrows without a majority: {split}")
    return _table(keys, majority, "majority")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out", type=Path)
    b.add_argument("--images", type=int, default=104)
    b.add_argument("--inputs", type=Path, help="keep (or reuse) the replicated input here")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, e.g. synthesis.pair_strength_scale=0.75 (repeatable)")
    s = sub.add_parser("sheets")
    s.add_argument("builds", type=Path, nargs="+")
    s.add_argument("--dest", type=Path, required=True)
    s.add_argument("--per-recipe", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--recipes", nargs="+", help="only these recipes' rows (default: all)")
    s.add_argument("--phrases", nargs="+", help="only these phrases' rows (default: all)")
    s.add_argument("--paired", action="store_true",
                   help="the first build's rows, and the other builds' rows of the same samples")
    s.add_argument("--changed", action="store_true",
                   help="with --paired: only the samples the second build makes otherwise")
    c = sub.add_parser("score")
    c.add_argument("key", type=Path)
    c.add_argument("verdicts", type=Path, nargs="+", help="one file per rater")
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.out, a.images, a.inputs, a.set)
    elif a.cmd == "sheets":
        sheets(a.builds, a.dest, a.per_recipe, a.seed, a.recipes, a.phrases, a.paired, a.changed)
    else:
        score(a.key, *a.verdicts)


if __name__ == "__main__":
    main()
