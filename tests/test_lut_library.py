"""The built-in look library, its manifest, users' folders and the `luts` commands."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from lut_library import LOOKS, builtin_luts, library_version, pool_for, version_for
from lut_library.library import (
    MANIFEST,
    chart_lab,
    chart_srgb,
    looks_technical,
    manifest_entries,
    scan_folder,
)
from schemas.config import load_config
from tasks.synthesize.colorimetry import delta_e_rows
from tasks.synthesize.luts import Lut3D, cube_bytes, read_cube, write_cube

runner = CliRunner()
colour = pytest.importorskip("colour")
LOGC = Path(colour.__file__).parent / "io/luts/tests/resources/resolve_cube/LogC_Video.cube"


def test_at_least_100_distinct_finite_looks():
    luts = builtin_luts()
    assert len(luts) == len(LOOKS) >= 100
    assert len({lk.id for lk in LOOKS}) == len(LOOKS)
    assert all(np.isfinite(v.table).all() and v.size == 33 for v in luts.values())
    families = {lk.family for lk in LOOKS}
    assert {"white_balance", "exposure", "tone_curve", "contrast", "saturation", "vibrance",
            "split_tone", "fade", "channel_mix", "film_curve", "tinted_mono", "combination"} <= families
    labs = [chart_lab(v) for v in luts.values()]
    closest = min(delta_e_rows(a, b).mean() for i, a in enumerate(labs) for b in labs[i + 1:])
    assert closest > 0.8  # no two looks are the same grade


def test_white_balance_follows_colour_temperature():
    grey = np.full((1, 3), 128, np.uint8)
    warm = builtin_luts()["wb_3200k"].apply(grey)[0].astype(int)
    cool = builtin_luts()["wb_9000k"].apply(grey)[0].astype(int)
    assert warm[0] > warm[2] + 20 and cool[2] > cool[0] + 10


def test_committed_manifest_is_current_and_builds_are_deterministic():
    committed = json.loads(MANIFEST.read_text())
    fresh = manifest_entries()
    assert committed["count"] == len(fresh) and committed["version"] == library_version(builtin_luts())
    # One version: `luts build` (this manifest) and every build's card agree.
    assert version_for(load_config(None).luts) == committed["version"]
    for old, new in zip(committed["looks"], fresh):
        assert (old["id"], old["family"], old["steps"], old["sha256"]) == \
            (new["id"], new["family"], new["steps"], new["sha256"])
        assert old["delta_e_vs_identity"] == pytest.approx(new["delta_e_vs_identity"], abs=0.02)


def test_luts_build_writes_titled_cubes_matching_the_manifest(tmp_path):
    res = runner.invoke(app, ["luts", "build", "--out", str(tmp_path), "--no-manifest"])
    assert res.exit_code == 0, res.output
    manifest = {e["id"]: e for e in json.loads(MANIFEST.read_text())["looks"]}
    files = sorted(tmp_path.glob("*.cube"))
    assert len(files) == len(manifest)
    for path in files[::9]:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[path.stem]["sha256"]
        assert read_cube(path).title == path.stem


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "my_luts"
    folder.mkdir()
    luts = builtin_luts()
    write_cube(luts["combo_vintage"], folder / "vintage_copy.cube")         # duplicate
    nudged = Lut3D(np.clip(luts["combo_night"].table + 0.002, 0, 1), "night-ish")
    write_cube(nudged, folder / "night_ish.cube")                            # near-duplicate
    warm = Lut3D.from_function(lambda x: np.clip(x * [1.2, 1.0, 0.7], 0, 1), 17, "strong warm")
    write_cube(warm, folder / "strong_warm.cube")                            # new look
    shutil.copy(LOGC, folder / "AlexaV3_K1S1_LogC2Video.cube")               # technical
    (folder / "broken.cube").write_text("LUT_3D_SIZE 2\n0 0 0\n")             # unreadable
    return folder


def test_user_folder_is_classified(user_folder):
    entries = {e.path.name: e for e in scan_folder(user_folder, builtin_luts())}
    assert entries["broken.cube"].error and "broken.cube" in entries["broken.cube"].error
    assert entries["vintage_copy.cube"].duplicate_of == "combo_vintage"
    assert entries["night_ish.cube"].near_duplicate_of == "combo_night"
    assert entries["AlexaV3_K1S1_LogC2Video.cube"].technical
    assert not entries["strong_warm.cube"].technical and not entries["strong_warm.cube"].near_duplicate_of


def test_user_folder_joins_the_library_by_config(user_folder):
    cfg = load_config(None, [f"luts.user_dirs=[{user_folder}]"])
    lib = pool_for(cfg.luts)
    extra = sorted(set(lib) - set(builtin_luts()))
    assert extra == ["user:my_luts/night_ish", "user:my_luts/strong_warm"]
    assert library_version(lib) != library_version(builtin_luts())
    with_tech = load_config(None, [f"luts.user_dirs=[{user_folder}]", "luts.exclude_technical=false"])
    assert "user:my_luts/AlexaV3_K1S1_LogC2Video" in pool_for(with_tech.luts)


def test_technical_detection_by_curve_not_only_name():
    logc = read_cube(LOGC)
    assert looks_technical("innocent name", logc)
    assert not any(looks_technical("x", v) for v in builtin_luts().values())


def test_luts_check_cli_reports_and_fails_on_errors(user_folder):
    res = runner.invoke(app, ["luts", "check", str(user_folder)])
    assert res.exit_code == 1
    assert "5 files, 1 unreadable, 1 duplicates, 1 near-duplicates, 1 technical" in res.output
    assert "broken.cube" in res.output and "error" in res.output
    (user_folder / "broken.cube").unlink()
    assert runner.invoke(app, ["luts", "check", str(user_folder)]).exit_code == 0


def test_luts_show_contact_sheet(tmp_path):
    out = tmp_path / "sheet.png"
    res = runner.invoke(app, ["luts", "show", "--out", str(out)])
    assert res.exit_code == 0, res.output
    from PIL import Image
    sheet = Image.open(out)
    assert sheet.width > 1000 and sheet.height > 1000


def test_chart_is_the_colorchecker():
    chart = chart_srgb()
    cc = colour.CCS_COLOURCHECKERS["ColorChecker24 - After November 2014"]
    # The chart's data are under D50: adapted to sRGB's D65 white (Bradford).
    rgb = colour.XYZ_to_sRGB(colour.xyY_to_XYZ(np.array(list(cc.data.values()))),
                             illuminant=cc.illuminant, chromatic_adaptation_transform="Bradford")
    assert np.array_equal(chart, (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    assert chart.shape == (24, 3)
    assert chart[18].min() > 225 and chart[23].max() < 70   # white and black patches
    assert cube_bytes(builtin_luts()["gamma_0.60"]) == cube_bytes(builtin_luts()["gamma_0.60"])


def test_subtle_and_non_photographic_looks_stay_out_of_composites():
    from lut_library.library import chart_delta_e, non_photographic

    lib = pool_for(load_config(None).luts)
    every = pool_for(load_config(None, ["luts.composite_min_delta_e=0",
                               "luts.composite_photographic_only=false"]).luts)
    assert set(every) == set(builtin_luts()) and set(lib) < set(every)
    assert all(chart_delta_e(lut) >= 6.0 and non_photographic(lut) is None for lut in lib.values())
    assert all(chart_delta_e(every[k]) < 6.0 or non_photographic(every[k]) for k in set(every) - set(lib))
    # Measured, not listed: exactly the monochrome, toned, desaturating and channel-swap looks.
    manifest = {e["id"]: e for e in json.loads(MANIFEST.read_text())["looks"]}
    assert {k for k, e in manifest.items() if not e["composite"]} == {
        "saturation_0.0", "saturation_0.3", "combo_flat_log_like", "combo_sunset_mono",
        "mix_channel_swap_rb", *(f"mono_{t}_{a}" for t in (
            "sepia", "cyanotype", "selenium", "gold", "green", "blue") for a in ("0.95", "0.60"))}
    assert all(e["not_in_composites_because"] for e in manifest.values() if not e["composite"])


def test_look_tables_are_kept_on_disk_and_a_damaged_copy_is_recomputed(tmp_path, monkeypatch):
    from lut_library import table_cache
    from lut_library.looks import builtin_luts as cached
    from lut_library.looks import looks_json

    monkeypatch.setenv("PHRASEHARMONY_CACHE_DIR", "off")
    cached.cache_clear()
    fresh = {k: v.table.copy() for k, v in cached(9).items()}
    monkeypatch.setenv("PHRASEHARMONY_CACHE_DIR", str(tmp_path))
    cached.cache_clear()
    assert {k: v.table.tobytes() for k, v in cached(9).items()} == {k: v.tobytes() for k, v in fresh.items()}
    (stored,) = tmp_path.glob("looks-*.npy")
    assert stored.with_suffix(".sha256").is_file() and not list(tmp_path.glob(".*tmp"))
    calls, tables = [], np.stack(list(fresh.values()))

    def counted():
        calls.append(1)
        return tables
    looks = looks_json()
    assert np.array_equal(table_cache.cached_tables(9, looks, len(LOOKS), counted), tables)
    assert not calls                                                         # read, not computed
    data = bytearray(stored.read_bytes())
    data[-5] ^= 1                                                            # one flipped bit
    stored.write_bytes(bytes(data))
    assert np.array_equal(table_cache.cached_tables(9, looks, len(LOOKS), counted), tables)
    assert calls == [1]                                                      # recomputed
    table_cache.cached_tables(9, looks, len(LOOKS), counted)
    assert calls == [1]                                                      # and stored again
    stored.write_bytes(stored.read_bytes()[:1000])                           # truncated
    table_cache.cached_tables(9, looks, len(LOOKS), counted)
    assert calls == [1, 1]
    # Another size, other looks or other code: another key.
    key = table_cache.tables_key(9, looks)
    assert len({key, table_cache.tables_key(17, looks), table_cache.tables_key(9, looks + " ")}) == 3
    monkeypatch.setattr(table_cache, "_SOURCES", table_cache._SOURCES[:-1])
    assert table_cache.tables_key(9, looks) != key
    cached.cache_clear()
