"""The built sample: schema, pixels, metadata, manifest, card, and the usual readers."""

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lut_library import pool_for, version_for
from schemas.config import RealismConfig
from schemas.shard import SCHEMA_VERSION, SHARD_SCHEMA
from tasks.core.files import sha256_file
from tasks.synthesize.metrics import difficulty
from tasks.synthesize.realism import FEATURES, reasons

pytestmark = pytest.mark.usefixtures("prefect_server")


def shard_paths(out):
    manifest = json.loads((out / "_manifest.json").read_text())
    return manifest, [out / s["path"] for s in manifest["shards"]]


def test_manifest_lists_every_shard_with_true_size_and_hash(sample_dataset):
    manifest, paths = shard_paths(sample_dataset)
    on_disk = sorted((sample_dataset / "data").rglob("*.parquet"))
    assert sorted(paths) == on_disk and len(paths) == 5
    for entry, path in zip(manifest["shards"], paths):
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == sha256_file(path)
        assert entry["rows"] == pq.ParquetFile(path).metadata.num_rows
    # (the sample builds 20 rows: tests/fixtures/sample_row_digests.json)
    assert manifest["totals"]["rows"] == sum(s["rows"] for s in manifest["shards"]) >= 20
    assert set(manifest["splits"]) == {"train", "val", "test"}


def test_shards_have_the_schema_and_provenance_metadata(sample_dataset):
    _, paths = shard_paths(sample_dataset)
    for path in paths:
        pf = pq.ParquetFile(path)
        assert pf.schema_arrow.remove_metadata().equals(SHARD_SCHEMA.remove_metadata())
        meta = {k.decode(): v.decode() for k, v in pf.metadata.metadata.items()}
        assert meta["phraseharmony.schema_version"] == SCHEMA_VERSION
        for key in ("config_hash", "code_version", "lut_library_version", "stats"):
            assert meta[f"phraseharmony.{key}"]
        assert json.loads(meta["phraseharmony.stats"])["rows"] == pf.metadata.num_rows
        for g in range(pf.num_row_groups):
            assert pf.metadata.row_group(g).total_byte_size < 100 * 2**20


def test_rows_decode_and_match_their_metrics(sample_dataset):
    _, paths = shard_paths(sample_dataset)
    rows = pq.read_table(paths[1]).to_pylist()
    assert rows
    for row in rows:
        target = np.asarray(Image.open(io.BytesIO(row["target"])))
        comp = np.asarray(Image.open(io.BytesIO(row["composite"])))
        mask_img = Image.open(io.BytesIO(row["mask"]))
        assert mask_img.format == "PNG" and mask_img.mode == "1"  # 1-bit PNG
        mask = np.asarray(mask_img, dtype=bool)
        assert target.shape == comp.shape == (row["height"], row["width"], 3)
        assert mask.shape == (row["height"], row["width"])
        assert mask.mean() == pytest.approx(row["fg_ratio"], abs=1e-6)
        x, y, w, h = row["bbox"]
        assert mask[int(y):int(y + h), int(x):int(x + w)].sum() == mask.sum()
        # Stored metrics were computed before JPEG; the decoded pair agrees closely.
        assert difficulty(comp, target, mask)["fmse"] == pytest.approx(row["fmse"], rel=0.25, abs=3)
        assert row["recipe"] in ("lut_pair", "lut_fg") and row["lut_fg"]
        assert (row["lut_bg"] is None) == (row["recipe"] == "lut_fg")
        assert row["sample_id"].startswith(row["task_id"] + "#")
        assert row["caption"] is None and row["clip_image"] is None
        # Every kept row passed the realism judge; its features are stored.
        assert set(row["realism"]) == set(FEATURES)
        assert reasons(row["realism"], RealismConfig()) == []
        assert row["realism"]["fmse"] == pytest.approx(row["fmse"])
        # Background untouched by lut_fg (up to JPEG noise); changed foreground.
        if row["recipe"] == "lut_fg" and (~mask).any():
            diff = np.abs(comp.astype(int) - target.astype(int))
            assert diff[~mask].mean() < diff[mask].mean()


def test_loads_in_pandas_duckdb_and_hf_datasets(sample_dataset):
    manifest, paths = shard_paths(sample_dataset)
    total = manifest["totals"]["rows"]
    import pandas as pd
    df = pd.read_parquet(sample_dataset / "data")
    assert len(df) == total and isinstance(df.loc[0, "target"], bytes)

    import duckdb
    (n,), = duckdb.sql(f"select count(*) from read_parquet('{sample_dataset}/data/*/*.parquet')").fetchall()
    assert n == total

    from datasets import load_dataset
    ds = load_dataset("parquet", data_files={"train": [str(p) for p in paths if "/train/" in str(p)]},
                      cache_dir=str(sample_dataset.parent / "hf_cache"))
    assert ds["train"].num_rows == manifest["splits"]["train"]["rows"]
    assert ds["train"].features["phrase"].dtype == "string"


def test_card_and_preview(sample_dataset):
    card = (sample_dataset / "README.md").read_text()
    manifest = json.loads((sample_dataset / "_manifest.json").read_text())
    assert f"rows: **{manifest['totals']['rows']}**" in card
    for needle in ("| train |", "recipe lut_pair", "iHarmony4", "foreground 0-5%", "## Config",
                   "preview.png", "data_files", "## Columns", "| `bbox` |", "## Recipes",
                   "- `lut_pair`: SSH-style", "## Source and licence", "scikit-image",
                   "CC BY 2.0", "@inproceedings{wu2020phrasecut", "io.BytesIO(row['mask'])",
                   "## Realism judge", "| recipe | judged | rejected |", "fMSE vs iHarmony4",
                   "`phrase_names_stuff`", "`invisible_change`"):
        assert needle in card
    from schemas.shard import COLUMN_NAMES
    assert all(f"| `{name}` |" in card for name in COLUMN_NAMES)
    # Paths in the card are relative (no build machine's folders), reasons are in words.
    assert str(sample_dataset) not in card and "/work/" not in card
    assert "no object of the same category" in card
    assert "claims VGPhraseCut" not in card and "Visual Genome](https" not in card
    from schemas.config import load_config
    assert manifest["lut_library_version"] == version_for(load_config(None).luts)
    preview = Image.open(sample_dataset / "preview.png")
    assert preview.width == 600 and preview.height > 8 * 192
    px = np.asarray(preview.convert("L"), dtype=float)
    assert px.std() > 20  # real pictures, not a blank canvas


def test_any_row_regenerates_from_its_provenance(sample_dataset):
    """Seed, recipe, looks and reference in a row are enough to rebuild its pixels."""
    from collections import Counter

    import pyarrow.compute as pc

    from conftest import SAMPLE_CONFIG
    from schemas.config import load_config
    from tasks.acquire.annotations import SkipLog, read_annotation_table
    from tasks.acquire.images import load_resized
    from tasks.synthesize.composite import sample_seed
    from tasks.synthesize.references import ReferencePool
    from tasks.synthesize.samples import task_rows

    cfg = load_config(SAMPLE_CONFIG, out_dir=sample_dataset)
    table = pq.read_table(sample_dataset / "data")
    annotations = read_annotation_table(cfg.annotations_path)
    refs = ReferencePool(annotations, cfg.images_dir, cfg.synthesis.size, cfg.masks)
    for recipe in sorted(set(table["recipe"].to_pylist())):
        row = table.filter(pc.equal(table["recipe"], recipe)).slice(0, 1).to_pylist()[0]
        assert row["seed"] == sample_seed(cfg.seed, row["sample_id"])
        task = annotations.filter(pc.equal(annotations["task_id"], row["task_id"])).to_pylist()[0]
        img, _ = load_resized(cfg.images_dir, row["image_id"], cfg.synthesis.size)
        again = {r["sample_id"]: r for r in task_rows(task, img, (row["orig_width"], row["orig_height"]),
                                                        cfg, pool_for(cfg.luts), refs, SkipLog(), Counter())}
        new = again[row["sample_id"]]
        for key in ("recipe", "lut_fg", "lut_bg", "reference_task_id", "target", "composite", "mask"):
            assert new[key] == row[key], (recipe, key)
