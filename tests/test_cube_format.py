"""The .cube reader/writer against colour-science's shipped corpus and the spec's rules."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from lut_library import build_library
from tasks.synthesize.luts import CubeError, Lut3D, read_cube, write_cube

colour = pytest.importorskip("colour")
RESOURCES = Path(colour.__file__).parent / "io" / "luts" / "tests" / "resources"
CORPUS = sorted(RESOURCES.glob("*_cube/*.cube"))


def all_codes_image() -> np.ndarray:
    """A 'photo' holding many colours: a 32^3 lattice of codes plus the extremes."""
    axis = np.linspace(0, 255, 32).round().astype(np.uint8)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r, g, b], -1).reshape(-1, 3)


def colour_reference(path: Path, rgb: np.ndarray) -> np.ndarray:
    from colour.algebra import table_interpolation_tetrahedral

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lut = colour.read_LUT(str(path))
    x = rgb.astype(np.float64) / 255.0
    steps = list(lut) if isinstance(lut, colour.LUTSequence) else [lut]
    for step in steps:
        if isinstance(step, colour.LUT3D):
            x = step.apply(x, interpolator=table_interpolation_tetrahedral)
        else:
            x = step.apply(x)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def test_corpus_is_there():
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reads_and_applies_like_colour_science(path, tmp_path):
    rgb = all_codes_image()
    ours = read_cube(path)
    ref = colour_reference(path, rgb)
    got = ours.apply(rgb)
    assert np.abs(got.astype(int) - ref).max() <= 1
    # ... and write -> read round-trips.
    write_cube(ours, tmp_path / "copy.cube")
    again = read_cube(tmp_path / "copy.cube")
    assert again.title == ours.title
    assert np.abs(again.apply(rgb).astype(int) - got).max() <= 1


def test_kernel_matches_numpy_reference():
    rgb = all_codes_image()
    for lut in list(build_library().values())[:6] + [read_cube(CORPUS[0])]:
        for interp in ("tetrahedral", "trilinear"):
            ref = lut.apply_float(rgb / 255.0, interp)
            ref = (np.clip(ref, 0, 1) * 255 + 0.5).astype(int)
            assert np.abs(lut.apply(rgb, interp).astype(int) - ref).max() <= 1


def _write(tmp_path, text, name="x.cube", newline="\n", extra=b""):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode() + extra)
    return path


IDENTITY2 = "\n".join(f"{r} {g} {b}" for b in (0, 1) for g in (0, 1) for r in (0, 1))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_ends_tabs_comments_and_latin1(tmp_path, newline):
    text = ('# comment with bytes \xe9\xff\n\nTITLE "odd # title"\t \nLUT_3D_SIZE\t2  \n'
            + IDENTITY2.replace(" ", "\t") + "   \n\n")
    path = tmp_path / "x.cube"
    path.write_bytes(text.replace("\n", newline).encode("latin-1"))
    lut = read_cube(path)
    assert lut.title == "odd # title" and lut.size == 2
    assert np.allclose(lut.table, Lut3D.identity(2).table)


def test_values_outside_unit_range_clamp_after_lookup(tmp_path):
    rows = "\n".join(f"{2 * r - 0.5} {g} {b * 1.5}" for b in (0, 1) for g in (0, 1) for r in (0, 1))
    lut = read_cube(_write(tmp_path, "LUT_3D_SIZE 2\n" + rows + "\n"))
    out = lut.apply(np.array([[0, 128, 255], [255, 0, 0]], np.uint8))
    assert out.tolist() == [[0, 128, 255], [255, 0, 0]]


def test_vendor_keywords_are_kept_not_fatal(tmp_path):
    lut = read_cube(_write(tmp_path, "LUT_IN_VIDEO_RANGE\nLUT_3D_SIZE 2\n" + IDENTITY2 + "\n"))
    assert lut.ignored_keywords == ("LUT_IN_VIDEO_RANGE",)


@pytest.mark.parametrize("body, message", [
    ("LUT_3D_SIZE 2\n0 0 0\n", ":.*1 data lines, expected 8"),
    ("LUT_3D_SIZE 1\n", ":1: LUT_3D_SIZE 1 outside 2..256"),
    ("LUT_3D_SIZE 257\n", ":1: LUT_3D_SIZE 257 outside"),
    ("LUT_3D_SIZE two\n", ":1: LUT_3D_SIZE 'two' is not an integer"),
    ("LUT_3D_SIZE 2\n" + "0 0 x\n" * 8, ":2: non-numeric"),
    ("LUT_3D_SIZE 2\n" + "0 0 nan\n" * 8, ":2: NaN or infinite"),
    ("LUT_3D_SIZE 2\n" + "0 0 inf\n" * 8, ":2: NaN or infinite"),
    ("LUT_3D_SIZE 2\n" + "0 0\n" * 8, ":2: expected 3 numbers"),
    ("LUT_3D_SIZE 2\nLUT_3D_SIZE 2\n", ":2: LUT_3D_SIZE repeated .first on line 1"),
    ('TITLE "a"\nTITLE "b"\n', ":2: TITLE repeated"),
    ("DOMAIN_MIN 0 0 1\nDOMAIN_MAX 1 1 1\nLUT_3D_SIZE 2\n" + IDENTITY2 + "\n", "DOMAIN_MIN .* below"),
    ("LUT_3D_SIZE 2\n" + IDENTITY2 + "\nDOMAIN_MIN 0 0 0\n", ":10: keyword DOMAIN_MIN after the table"),
    ("TITLE unquoted\n", ":1: TITLE needs a quoted string"),
    ("# nothing\n", "no LUT_1D_SIZE or LUT_3D_SIZE"),
])
def test_refusals_name_file_and_line(tmp_path, body, message):
    with pytest.raises(CubeError, match=message) as err:
        read_cube(_write(tmp_path, body, name="bad.cube"))
    assert "bad.cube" in str(err.value)


def test_shaper_plus_cube_round_trip(tmp_path):
    shaper = np.linspace(0, 1, 5, dtype=np.float32)[:, None].repeat(3, 1) ** 0.5
    lut = Lut3D(build_library()["mono_sepia_0.95"].table, "s", shaper=shaper,
                shaper_min=(0.0,) * 3, shaper_max=(2.0,) * 3)
    write_cube(lut, tmp_path / "s.cube")
    back = read_cube(tmp_path / "s.cube")
    assert np.allclose(back.shaper, shaper) and back.shaper_max == (2.0, 2.0, 2.0)
    rgb = all_codes_image()
    assert np.abs(back.apply(rgb).astype(int) - lut.apply(rgb)).max() <= 1
