"""bench/review.py's tally of blind verdicts: one rater's shares, several raters'
agreement (Cohen's kappa) and the majority's shares."""

from __future__ import annotations

import pytest

from bench.review import kappa, score


def _csv(path, header, rows):
    path.write_text("\n".join([header] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def test_two_raters_agreement_and_majority(tmp_path, capsys):
    key = _csv(tmp_path / "key.csv", "n,build,sample_id,recipe",
               [(n, "after", f"t#{n}", "lut_fg") for n in range(4)])
    one = _csv(tmp_path / "one.csv", "n,verdict,note",
               [(0, "plausible", ""), (1, "plausible", ""), (2, "absurd", "cup"), (3, "no_op", "")])
    two = _csv(tmp_path / "two.csv", "n,verdict,note",
               [(0, "plausible", ""), (1, "artifact", "seam"), (2, "absurd", ""), (3, "no_op", "")])
    # 3 of 4 the same; by chance (2*1 + 1*1 + 1*1) / 16: kappa (0.75 - 0.25) / 0.75.
    agree, k = kappa({0: "plausible", 1: "plausible", 2: "absurd", 3: "no_op"},
                     {0: "plausible", 1: "artifact", 2: "absurd", 3: "no_op"})
    assert agree == 0.75 and k == pytest.approx(2 / 3)
    majority = score(key, one, two)
    assert dict(majority["after"]["all"]) == {"plausible": 1, "absurd": 1, "no_op": 1}
    out = capsys.readouterr().out
    assert "Cohen's kappa 0.67" in out and "rows without a majority: 1" in out


def test_an_unknown_verdict_names_the_file_and_row(tmp_path):
    key = _csv(tmp_path / "key.csv", "n,build,sample_id,recipe", [(0, "a", "t#0", "idt")])
    bad = _csv(tmp_path / "bad.csv", "n,verdict,note", [(0, "maybe", "")])
    with pytest.raises(SystemExit, match="bad.csv: row 0 has verdict 'maybe'"):
        score(key, bad)


def test_paired_sheets_show_each_build_s_row_of_the_same_samples(sample_dataset, tmp_path):
    """A change judged where it touched: the first build's rows of some phrases, and the
    other build's rows of the same samples, shuffled together."""
    import csv
    import shutil

    import pyarrow.dataset as ds

    from bench.review import sheets

    other = tmp_path / "other"
    shutil.copytree(sample_dataset / "data", other / "data")
    rows = ds.dataset(sample_dataset / "data").to_table(columns=["sample_id", "phrase"]).to_pylist()
    phrase = rows[0]["phrase"]
    wanted = {r["sample_id"] for r in rows if r["phrase"] == phrase}
    sheets([sample_dataset, other], tmp_path / "s", per_recipe=2, seed=0, phrases=[phrase], paired=True)
    key = list(csv.DictReader((tmp_path / "s" / "key.csv").open()))
    first = [k["sample_id"] for k in key if k["build"] == str(sample_dataset)]
    second = [k["sample_id"] for k in key if k["build"] == str(other)]
    assert first and sorted(first) == sorted(second) and set(first) <= wanted
    assert len(list((tmp_path / "s").glob("sheet-*.png"))) == (len(key) + 7) // 8


def test_changed_sheets_hold_only_the_samples_a_change_touched(sample_dataset, tmp_path):
    """--changed: of two builds, only the samples the second makes otherwise (one composite
    replaced, one row gone), each with its enlarged region beside the sheets."""
    import csv

    import cv2
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from bench.review import sheets

    table = ds.dataset(sample_dataset / "data").to_table()
    ids = table.column("sample_id").to_pylist()
    redrawn, gone = ids[0], ids[1]
    flipped = cv2.imencode(".jpg", np.full((256, 256, 3), 90, np.uint8))[1].tobytes()
    composites = [flipped if i == redrawn else c for i, c in zip(ids, table.column("composite").to_pylist())]
    other = table.set_column(table.schema.get_field_index("composite"), "composite",
                             pa.array(composites, pa.binary()))
    other = other.filter(pa.array([i != gone for i in ids]))
    (tmp_path / "other" / "data").mkdir(parents=True)
    pq.write_table(other, tmp_path / "other" / "data" / "part-0.parquet")
    sheets([sample_dataset, tmp_path / "other"], tmp_path / "s", per_recipe=50, seed=0,
           paired=True, changed=True)
    key = list(csv.DictReader((tmp_path / "s" / "key.csv").open()))
    assert sorted(k["sample_id"] for k in key if k["build"] == str(sample_dataset)) == sorted([redrawn, gone])
    assert [k["sample_id"] for k in key if k["build"] != str(sample_dataset)] == [redrawn]
    zooms = sorted((tmp_path / "s" / "zoom").glob("*.png"))
    assert [p.stem for p in zooms] == [f"{n:03d}" for n in range(len(key))]
    assert cv2.imread(str(zooms[0])).shape[0] > 3 * 2 * 12       # enlarged, the margin kept
    with pytest.raises(SystemExit, match="--changed compares two builds"):
        sheets([sample_dataset], tmp_path / "t", per_recipe=1, seed=0, changed=True)
