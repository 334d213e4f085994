"""The realism judge against the rows judged by eye (tests/fixtures/realism).

    .venv/bin/python bench/realism_eval.py [--sheets docs/realism]

Prints, per verdict (plausible, no_op, absurd, artifact: two blind raters' where they
agree), how many rows the judge
flags and for which reasons, how many the build no longer makes at all (the causes
fixed upstream: the row's look left composites, its phrase names stuff, its mask is a
box or has no outline in the photo), then precision and recall of "flagged" against "a
reviewer would drop it" (no_op, absurd, artifact). ``--sheets DIR`` also renders the
contact sheets docs/realism.md shows (JPEG): per reason, the rows it flags; and the rows
it keeps, per verdict.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "tests" / "fixtures" / "realism"
VERDICTS = ("plausible", "no_op", "absurd", "artifact")


def _decode(blob: bytes, mask: bool = False) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE if mask else cv2.IMREAD_COLOR)
    return img > 0 if mask else np.ascontiguousarray(img[..., ::-1])


def rows_file() -> Path:
    """The labelled rows' pixels: generated (tests/fixtures/realism/make_rows.py, ~10 s)
    the first time, then read from there."""
    path = FIXTURE / "rows.parquet"
    if not path.exists():
        import importlib.util

        spec = importlib.util.spec_from_file_location("make_rows", FIXTURE / "make_rows.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.make_rows(path)
    return path


def rater_verdicts() -> list[dict[str, str]]:
    """Two raters' blind verdicts on the labelled rows (sample id -> verdict), given on
    the review's sheets (composite | target | outline | 4x difference, zoom allowed)."""
    return [{r["sample_id"]: r["verdict"] for r in csv.DictReader(
        (FIXTURE / "review" / f"labelled-rater{who}.csv").open())} for who in ("C", "D")]


def labelled_rows() -> list[dict]:
    """Each labelled row: its pixels decoded, provenance, verdict and note. ``verdict``
    is the two raters' (``rater_verdicts``) where they agree, else "split";
    ``first_verdict`` the one this set was first judged with (one reviewer, target |
    composite sheets without the difference: it agrees with either rater at kappa
    0.35-0.40, the raters with each other at 0.76)."""
    import pyarrow.parquet as pq

    verdicts = {int(r["row"]): r for r in csv.DictReader((FIXTURE / "verdicts.csv").open())}
    first, second = rater_verdicts()
    rows = []
    for i, r in enumerate(pq.read_table(rows_file()).to_pylist()):
        v = verdicts[i]
        if v["sample_id"] != r["sample_id"]:
            raise ValueError(f"verdicts.csv row {i} is {v['sample_id']}, rows.parquet has {r['sample_id']}")
        both = first[r["sample_id"]], second[r["sample_id"]]
        rows.append({**r, "target": _decode(r["target"]), "composite": _decode(r["composite"]),
                     "mask": _decode(r["mask"], mask=True), "first_verdict": v["verdict"],
                     "verdict": both[0] if both[0] == both[1] else "split", "note": v["note"]})
    return rows


def judge_rows(rows: list[dict], cfg=None) -> list[list[str]]:
    from schemas.config import RealismConfig
    from tasks.synthesize.realism import assess

    return [assess(r["target"], r["composite"], r["mask"], cfg or RealismConfig()) for r in rows]


def no_longer_made(rows: list[dict]) -> list[str | None]:
    """Per row, why today's default build would not make it (or None): its look is out
    of composites, its phrase names stuff or eyewear, its mask is box-shaped, or the photo
    shows no edge along the mask's outline (anywhere, or along much of it)."""
    from lut_library import pool_for
    from schemas.config import RunConfig
    from tasks.synthesize.realism import mask_outline
    from tasks.synthesize.samples import phrase_skip

    cfg = RunConfig()
    looks = pool_for(cfg.luts)
    out = []
    for r in rows:
        ys, xs = np.nonzero(r["mask"])
        box = (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
        outline = mask_outline(r["target"], r["mask"])
        if skipped := phrase_skip(r["phrase_name"], cfg.synthesis):
            out.append(skipped)
        elif r["mask"].sum() > cfg.synthesis.max_box_fill * box:
            out.append("mask_box_shaped")
        elif 0 <= outline.contrast < cfg.synthesis.realism.min_outline_contrast:
            out.append("mask_no_outline")
        elif outline.loose > cfg.synthesis.max_loose_outline:
            out.append("mask_loose_outline")
        elif any(k and k not in looks for k in (r["lut_fg"], r["lut_bg"])):
            out.append("look_not_in_composites")
        else:
            out.append(None)
    return out


def summary(rows: list[dict], flags: list[list[str]]) -> dict:
    """Flag rate per verdict, reasons per verdict, rows no longer made, precision and
    recall, over the rows with a verdict (not "split")."""
    out: dict = {"rate": {}, "reasons": {}, "n": {}, "gone": {}, "either": {}}
    kept = [i for i, r in enumerate(rows) if r["verdict"] in VERDICTS]
    rows, flags = [rows[i] for i in kept], [flags[i] for i in kept]
    gone = no_longer_made(rows)
    for verdict in VERDICTS:
        mine = [(f, g) for r, f, g in zip(rows, flags, gone) if r["verdict"] == verdict]
        out["n"][verdict] = len(mine)
        out["rate"][verdict] = sum(bool(f) for f, _ in mine) / max(1, len(mine))
        out["gone"][verdict] = sum(g is not None for _, g in mine) / max(1, len(mine))
        out["either"][verdict] = sum(bool(f) or g is not None for f, g in mine) / max(1, len(mine))
        out["reasons"][verdict] = Counter(reason for f, _ in mine for reason in f)
    bad = [r["verdict"] != "plausible" for r in rows]
    flagged = [bool(f) for f in flags]
    tp = sum(b and f for b, f in zip(bad, flagged))
    out["precision"] = tp / max(1, sum(flagged))
    out["recall"] = tp / max(1, sum(bad))
    return out


def sheet(rows: list[dict], path: Path, title: str, per_row: int = 4, side: int = 160) -> None:
    """Target | composite pairs with the mask outlined on the target, labelled."""
    cells = []
    for r in rows:
        target = np.ascontiguousarray(r["target"][..., ::-1])
        contours, _ = cv2.findContours(r["mask"].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(target, contours, -1, (0, 255, 255), 1)
        pair = [cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA)
                for x in (target, np.ascontiguousarray(r["composite"][..., ::-1]))]
        cell = np.full((side + 16, 2 * side + 4, 3), 255, np.uint8)
        cell[16:, :side], cell[16:, side + 4:] = pair
        label = f"{r['recipe']} ({r['verdict']})"
        cv2.putText(cell, label, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(np.pad(cell, ((3, 3), (3, 3), (0, 0)), constant_values=255))
    if not cells:
        return
    while len(cells) % per_row:
        cells.append(np.full_like(cells[0], 255))
    grid = np.vstack([np.hstack(cells[i:i + per_row]) for i in range(0, len(cells), per_row)])
    head = np.full((22, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(head, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 85] if path.suffix == ".jpg" else []
    cv2.imwrite(str(path), np.vstack([head, grid]), params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sheets", type=Path, help="write contact sheets (PNG) here")
    ap.add_argument("--max-per-sheet", type=int, default=8)
    a = ap.parse_args()
    rows = labelled_rows()
    flags = judge_rows(rows)
    s = summary(rows, flags)
    print("| verdict | rows | flagged by the judge | no longer made | either | the judge's reasons |\n"
          "|---|---:|---:|---:|---:|---|")
    for v in VERDICTS:
        reasons = ", ".join(f"{k} {n}" for k, n in s["reasons"][v].most_common())
        print(f"| {v} | {s['n'][v]} | {s['rate'][v]:.0%} | {s['gone'][v]:.0%} | {s['either'][v]:.0%} "
              f"| {reasons} |")
    print(f"\nflagged vs a reviewer's drop (no_op, absurd, artifact): precision {s['precision']:.0%}, "
          f"recall {s['recall']:.0%}; {sum(r['verdict'] == 'split' for r in rows)} rows where the two "
          f"raters disagree left out")
    if a.sheets:
        from tasks.synthesize.realism import REASONS

        for reason in REASONS:
            hit = [r for r, f in zip(rows, flags) if reason in f][:a.max_per_sheet]
            sheet(hit, a.sheets / f"flagged-{reason}.jpg", f"flagged: {reason}")
        kept = [r for r, f in zip(rows, flags) if not f]
        for verdict in VERDICTS:
            sheet([r for r in kept if r["verdict"] == verdict][:a.max_per_sheet],
                  a.sheets / f"kept-{verdict}.jpg", f"kept by the judge, judged {verdict} by eye")


if __name__ == "__main__":
    main()
