"""DoveNet's transfers: the statistics they promise, on real photos."""

import cv2
import numpy as np
import pytest

from tasks.sample_photos import load_photo
from tasks.transfers import (
    TransferError,
    hist_ycbcr,
    idt,
    reinhard,
    rgb_to_lalphabeta,
    transfer,
    xiao_rgb,
    xiao_rgb_float,
)


@pytest.fixture(scope="module")
def pair():
    src = cv2.resize(load_photo("coffee"), (128, 128), interpolation=cv2.INTER_AREA)
    ref = cv2.resize(load_photo("flower"), (128, 128), interpolation=cv2.INTER_AREA)
    m_src = np.zeros((128, 128), bool)
    m_src[20:100, 30:110] = True
    m_ref = np.zeros((128, 128), bool)
    m_ref[30:110, 40:90] = True
    return src, m_src, ref, m_ref


def test_reinhard_gives_the_reference_masked_mean_and_std(pair):
    src, m_src, ref, m_ref = pair
    out = reinhard(src[m_src], ref[m_ref])
    got, want = rgb_to_lalphabeta(out / 255.0), rgb_to_lalphabeta(ref[m_ref] / 255.0)
    assert np.allclose(got.mean(0), want.mean(0), atol=0.02)
    assert np.allclose(got.std(0), want.std(0), rtol=0.1, atol=0.01)


def test_xiao_matches_mean_and_covariance(pair):
    src, m_src, ref, m_ref = pair
    exact = xiao_rgb_float(src[m_src], ref[m_ref])
    r = ref[m_ref] / 255.0
    assert np.allclose(exact.mean(0), r.mean(0), atol=1e-9)
    assert np.allclose(np.cov(exact, rowvar=False), np.cov(r, rowvar=False), atol=1e-9)
    stored = xiao_rgb(src[m_src], ref[m_ref]) / 255.0   # after clipping and rounding
    assert np.allclose(stored.mean(0), r.mean(0), atol=0.03)


def test_hist_ycbcr_reproduces_the_reference_cdf(pair):
    src, m_src, ref, m_ref = pair
    out = hist_ycbcr(src[m_src], ref[m_ref])
    def y(px):
        return 16 + px.reshape(-1, 3) / 255.0 @ np.array([65.481, 128.553, 24.966])
    qs = np.linspace(0.05, 0.95, 10)
    # Bin tolerance: a few luma levels (rounding through RGB and back).
    assert np.abs(np.quantile(y(out), qs) - np.quantile(y(ref[m_ref]), qs)).max() < 4


def test_idt_moves_the_distribution_toward_the_reference(pair):
    src, m_src, ref, m_ref = pair
    x = idt(src[m_src], ref[m_ref], np.random.default_rng(0))
    r = ref[m_ref] / 255.0
    before = np.abs(src[m_src] / 255.0 - 0).mean(0) - r.mean(0)
    assert np.abs(x.mean(0) - r.mean(0)).max() < np.abs(before).max()
    assert np.abs(x.mean(0) - r.mean(0)).max() < 0.03


@pytest.mark.parametrize("method", ["reinhard", "xiao_rgb", "hist_ycbcr", "idt"])
def test_transfer_changes_only_the_foreground_and_is_deterministic(pair, method):
    src, m_src, ref, m_ref = pair
    a = transfer(method, src, m_src, ref, m_ref, np.random.default_rng(3))
    b = transfer(method, src, m_src, ref, m_ref, np.random.default_rng(3))
    assert np.array_equal(a, b) and a.dtype == np.uint8
    assert np.array_equal(a[~m_src], src[~m_src])
    assert np.abs(a[m_src].astype(int) - src[m_src]).mean() > 3


@pytest.mark.parametrize("method", ["reinhard", "xiao_rgb", "idt"])
def test_zero_variance_reference_is_a_counted_reason(pair, method):
    src, m_src, _ref, m_ref = pair
    flat = np.full_like(src, 120)
    with pytest.raises(TransferError) as err:
        transfer(method, src, m_src, flat, m_ref, np.random.default_rng(0))
    assert err.value.reason == "transfer_zero_variance"


def test_empty_mask_is_refused(pair):
    src, m_src, ref, _ = pair
    with pytest.raises(TransferError, match="mask_too_small"):
        transfer("reinhard", src, m_src, ref, np.zeros_like(m_src), np.random.default_rng(0))
