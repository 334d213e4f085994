from pathlib import Path

import pytest

from schemas.config import REPO_ROOT, RunConfig, load_config, parse_overrides

SAMPLE = REPO_ROOT / "configs" / "sample.yaml"


def test_sample_config_loads_with_anchored_paths():
    cfg = load_config(SAMPLE)
    assert cfg.name == "sample"
    assert cfg.annotations.dir.is_absolute() and (cfg.annotations.dir / "refer_train.json").exists()
    assert cfg.shards.images_per_shard == 2


def test_full_config_loads():
    cfg = load_config(REPO_ROOT / "configs" / "vgphrasecut.yaml")
    assert cfg.images.source == "http" and cfg.runner.kind == "processes"
    # The official script's Drive ids, for every file the build reads.
    assert cfg.annotations.sources["refer_train.json"].gdrive_id == "1qx-0q6r9r0YUGpoyT0B8HJKmUFWQDSu7"
    assert {"image_data_split.json", "refer_val.json", "refer_test.json"} <= set(cfg.annotations.sources)


def test_fetch_settings_do_not_change_the_config_hash():
    base = load_config(SAMPLE)
    tuned = load_config(SAMPLE, ["images.workers=4", "images.http.per_host_rate=2",
                                 "annotations.gdrive_url=http://127.0.0.1/{id}"])
    assert base.config_hash() == tuned.config_hash()
    assert base.config_hash() != load_config(SAMPLE, ["images.max_pixels=1000"]).config_hash()


def test_zip_source_needs_zips():
    with pytest.raises(ValueError, match="images.zips"):
        load_config(SAMPLE, ["images.source=zip"])


def test_overrides_are_typed_and_nested():
    cfg = load_config(SAMPLE, ["synthesis.size=128", "runner.kind=dask", "seed=7"])
    assert cfg.synthesis.size == 128 and cfg.runner.kind == "dask" and cfg.seed == 7
    assert parse_overrides(["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}


def test_hash_ignores_where_and_how_fast_but_not_what():
    base = load_config(SAMPLE)
    moved = load_config(SAMPLE, ["runner.kind=processes"], out_dir="/elsewhere")
    assert moved.config_hash() == base.config_hash()
    assert load_config(SAMPLE, ["seed=1"]).config_hash() != base.config_hash()
    assert load_config(SAMPLE, ["synthesis.jpeg_quality=90"]).config_hash() != base.config_hash()


@pytest.mark.parametrize("override, message", [
    (["synthesis.sise=128"], "sise"),
    (["annotations.splits=[train, bogus]"], "bogus"),
    (["synthesis.recipes={warp: 1}"], "warp"),
    (["synthesis.strength_min=0.9", "synthesis.strength_max=0.1"], "strength_min"),
    (["images.source=local"], "images.dir"),
    (["nonsense"], "key.sub=value"),
])
def test_bad_config_is_a_clear_error(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(SAMPLE, override)


def test_bad_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match=str(bad)):
        load_config(bad)


def test_defaults_are_valid():
    assert RunConfig().synthesis.size == 256
    assert isinstance(RunConfig().out_dir, Path)
