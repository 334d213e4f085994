"""Measured yield: a build's counts add up, the dry run projects what the build then makes,
and two composites of one phrase never repeat a draw."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict

import pyarrow.dataset as ds

from conftest import REPO, SAMPLE_CONFIG
from tasks.publish.yield_report import VGPHRASECUT_PHRASES, check, projection, yield_of


def _markers(out):
    return [json.loads(p.read_text()) for p in sorted((out / "_done").glob("*.json"))]


def test_the_yield_report_adds_up_on_the_sample(sample_dataset):
    rep = yield_of(_markers(sample_dataset), composites_per_task=2)
    assert check(rep) == []
    manifest = json.loads((sample_dataset / "_manifest.json").read_text())
    assert rep["phrases_in"] == sum(s["tasks"] for s in manifest["splits"].values()) == 27
    assert rep["phrases_in"] == sum(rep["phrases_skipped"].values()) + rep["phrases_drawn"]
    assert rep["samples_drawn"] == rep["rows"] + sum(rep["samples_lost"].values())
    assert rep["rows"] == manifest["totals"]["rows"] and rep["phrases_skipped"]["phrase_names_stuff"] == 3
    card = (sample_dataset / "README.md").read_text()
    assert f"**{rep['rows']} rows** ({rep['rows_per_phrase']:.3f} per phrase)" in card


def test_the_projection_scales_to_vgphrasecut():
    p = projection(2.0, VGPHRASECUT_PHRASES, bytes_per_row=70_000, seconds_per_row=0.02)
    assert p["phrases"] == 345_486 and p["rows"] == 690_972
    assert p["rows_by_split"] == {"train": 621_632, "val": 40_632, "test": 28_708}
    assert abs(p["gb"] - 690_972 * 70_000 / 1e9) < 1e-9
    assert abs(p["core_hours"] - 690_972 * 0.02 / 3600) < 1e-9


def test_the_dry_run_projects_the_sample_build_within_a_fifth(sample_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), COLUMNS="300")
    res = subprocess.run([sys.executable, "-m", "flows.cli", "build", "--config", str(SAMPLE_CONFIG), "--out",
                          str(tmp_path / "dry"), "--dry-run"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    projected = int(re.search(r"projected: ([\d,]+) rows", res.stdout).group(1).replace(",", ""))
    built = json.loads((sample_dataset / "_manifest.json").read_text())["totals"]["rows"]
    # The rate is measured on 351 replicated phrases (each photo graded by a look); the
    # sample's own 27 draw 38 samples, so one kept or lost row is ~5% of its build
    # (20 rows: 24 projected).
    assert abs(projected - built) <= 0.2 * built, (projected, built, res.stdout)
    assert "27 phrases" in res.stdout and "GB of shards" in res.stdout and "core-hours" in res.stdout
    assert not (tmp_path / "dry" / "images").exists() or not any((tmp_path / "dry" / "images").glob("*.jpg"))
    assert not (tmp_path / "home" / "temporary-server.log").exists()


def test_two_composites_of_a_phrase_never_share_their_draw(sample_dataset):
    rows = ds.dataset(sample_dataset / "data").to_table(
        columns=["task_id", "recipe", "lut_fg", "lut_bg", "reference_task_id"]).to_pylist()
    by_task = defaultdict(list)
    for r in rows:
        by_task[r["task_id"]].append((r["recipe"], r["lut_fg"], r["lut_bg"], r["reference_task_id"]))
    assert any(len(v) > 1 for v in by_task.values())
    assert all(len(set(v)) == len(v) for v in by_task.values())
