"""First LUT kernel and .cube basics (the colour-engine issue deepens these)."""

import numpy as np
import pytest

from lut_library import LOOKS, build_library, library_version
from tasks.synthesize.luts import CubeError, Lut3D, read_cube, write_cube


@pytest.fixture
def photo():
    from skimage import data
    return data.astronaut()[::4, ::4].copy()


@pytest.mark.parametrize("interp", ["tetrahedral", "trilinear"])
def test_identity_is_identity(photo, interp):
    for size in (2, 17, 33):
        assert np.array_equal(Lut3D.identity(size).apply(photo, interp), photo)


@pytest.mark.parametrize("interp", ["tetrahedral", "trilinear"])
def test_affine_lut_reproduces_the_map(photo, interp):
    m = np.array([[0.8, 0.1, 0.05], [0.05, 0.9, 0.0], [0.0, 0.2, 0.7]])
    off = np.array([0.02, -0.01, 0.05])
    lut = Lut3D.from_function(lambda x: x @ m.T + off, 9)
    expected = np.clip(photo / 255.0 @ m.T + off, 0, 1) * 255
    assert np.abs(lut.apply(photo, interp).astype(float) - expected).max() <= 1.0


def test_blend_moves_toward_identity(photo):
    lut = build_library()["wb_3200k"]
    assert np.array_equal(lut.blend(0.0).apply(photo), photo)
    d_half = np.abs(lut.blend(0.5).apply(photo).astype(int) - photo).mean()
    d_full = np.abs(lut.apply(photo).astype(int) - photo).mean()
    assert 0 < d_half < d_full


def test_cube_round_trip(tmp_path, photo):
    lut = build_library()["split_teal_orange_0.50"]
    write_cube(lut, tmp_path / "a.cube")
    back = read_cube(tmp_path / "a.cube")
    assert back.title == "split_teal_orange_0.50" and back.size == 33
    assert np.abs(back.table - lut.table).max() < 1e-5
    # 6 decimals in the file: at most one code value apart after rounding.
    assert np.abs(back.apply(photo).astype(int) - lut.apply(photo)).max() <= 1


def test_cube_red_changes_fastest(tmp_path):
    text = "LUT_3D_SIZE 2\n" + "\n".join(
        f"{r} {g} {b}" for b in (0, 1) for g in (0, 1) for r in (0, 1)) + "\n"
    (tmp_path / "id.cube").write_bytes(text.replace("\n", "\r\n").encode())
    lut = read_cube(tmp_path / "id.cube")
    assert np.allclose(lut.table, Lut3D.identity(2).table)


@pytest.mark.parametrize("body, message", [
    ("LUT_3D_SIZE 2\n0 0 0\n", "1 data lines, expected 8"),
    ("LUT_3D_SIZE 1\n", "outside 2..256"),
    ("LUT_3D_SIZE 2\n" + "0 0 x\n" * 8, ":2: non-numeric"),
    ("LUT_3D_SIZE 2\n" + "0 0 nan\n" * 8, "NaN"),
])
def test_bad_cube_names_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.cube"
    path.write_text(body)
    with pytest.raises(CubeError, match=message) as err:
        read_cube(path)
    assert "bad.cube" in str(err.value)


def test_library_is_distinct_and_versioned(photo):
    lib = build_library()
    assert len(lib) == len(LOOKS) >= 100
    outs = {k: v.apply(photo).tobytes() for k, v in lib.items()}
    assert len(set(outs.values())) == len(outs)  # every look differs
    assert all(np.isfinite(v.table).all() for v in lib.values())
    assert library_version(lib) == library_version(dict(lib))


def test_fused_composite_equals_separate_passes(photo):
    """One pass over the pixels gives exactly what full passes and a mask select give."""
    from tasks.synthesize.lut_kernels import apply_u8, composite_u8

    lib = build_library()
    ids = sorted(lib)
    rng = np.random.default_rng(3)
    px = photo.reshape(-1, 3)
    for _ in range(12):
        mask = rng.random(photo.shape[:2]) < rng.uniform(0.05, 0.6)
        a, b = lib[ids[rng.integers(len(ids))]], lib[ids[rng.integers(len(ids))]]
        full_a, full_b = apply_u8(px, a).reshape(photo.shape), apply_u8(px, b).reshape(photo.shape)
        target, comp = composite_u8(photo, mask, a, b)
        assert np.array_equal(target, full_b)
        assert np.array_equal(comp, np.where(mask[..., None], full_a, full_b))
        target, comp = composite_u8(photo, mask, a)
        assert np.array_equal(target, photo)
        assert np.array_equal(comp, np.where(mask[..., None], full_a, photo))
