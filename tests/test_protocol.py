"""Evaluation protocols: the authors' (``--protocol ht``) worked by hand, ours ("clean"),
and both on an iHarmony4-shaped folder of two sub-datasets."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import make_iharmony4
from flows.cli import app
from schemas.train_config import TrainConfig, TrainData
from train.evaluate import run_metrics
from train.ht_authors import to_authors
from train.loader import Loader
from train.metrics import Metrics, per_image
from train.models import HTPlus
from train.protocol_ht import per_image as per_image_ht
from train.protocol_ht import read_triple
from train.sources import open_source


def test_the_authors_protocol_worked_by_hand():
    """A flat grey output of 0.999 is 254.745 levels: truncated to 254 (rounded: 255). A
    flat grey survives JPEG q100 exactly (Y = the grey, Cb = Cr = 128), and so does a
    mask whose edge falls on a JPEG block boundary (x = 128)."""
    h = np.full((256, 256, 3), 0.999, np.float32)
    r = np.full((256, 256, 3), 200 / 255, np.float32)
    m = np.zeros((256, 256), np.float32)
    m[:, :128] = 1
    got = per_image_ht(h, r, m)
    assert got["mse"] == 54.0**2 and got["fmse"] == pytest.approx(54.0**2, rel=1e-6)
    assert got["psnr"] == pytest.approx(10 * math.log10(255**2 / 54**2))
    assert got["fpsnr"] == pytest.approx(10 * math.log10(255**2 / 54**2), rel=1e-6)
    assert got["fg_ratio"] == 0.5
    clean = per_image(torch.from_numpy(h).permute(2, 0, 1)[None], torch.from_numpy(r).permute(2, 0, 1)[None],
                      torch.from_numpy(m)[None, None])
    assert clean["mse"].item() == 55.0**2   # rounded, not truncated
    # An empty mask: no fMSE (theirs divides by zero); left out of the means and counted.
    empty = per_image_ht(h, r, np.zeros((256, 256), np.float32))
    assert math.isnan(empty["fmse"]) and empty["mse"] == 54.0**2
    metrics = Metrics()
    metrics.add({k: torch.tensor([got[k], empty[k]]) for k in got}, ["a", "a"])
    overall = metrics.summary()["overall"]
    assert overall["n"] == 2 and overall["empty_masks"] == 1 and overall["fmse"] == pytest.approx(54.0**2)


def test_their_loader_resizes_with_pil_and_keeps_the_mask_binary():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    mask = np.zeros((200, 300), np.uint8)
    mask[50:150, 60:200] = 255

    def enc(a, fmt):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt)
        return buf.getvalue()

    comp, real, m = read_triple(enc(img, "JPEG"), enc(img, "JPEG"), enc(mask, "PNG"))
    assert comp.shape == real.shape == (256, 256, 3) and m.shape == (256, 256) and set(np.unique(m)) == {0, 1}
    decoded = Image.open(io.BytesIO(enc(img, "JPEG"))).convert("RGB")
    expect = np.asarray(decoded.resize((256, 256), Image.BILINEAR))
    assert np.array_equal(comp, expect)
    assert read_triple(enc(img, "JPEG"), enc(img[:100], "JPEG"), enc(mask, "PNG")) == "size_mismatch"


@pytest.mark.parametrize("protocol", ["clean", "ht"])
def test_the_identity_reproduces_the_composites_per_sub_dataset(sample_dataset, tmp_path, protocol):
    make_iharmony4(tmp_path / "ih", sample_dataset)
    loader = Loader(open_source(tmp_path / "ih"), "test", TrainData(size=256, workers=0), 4, 0, train=False,
                    decode="ht" if protocol == "ht" else "opencv")
    model, inputs, _ = run_metrics(lambda b: b["composite"], loader, protocol=protocol)
    for sub in ("HCOCO", "HFlickr"):
        assert model["by_recipe"][sub]["n"] == 3
        assert model["by_recipe"][sub] == inputs["by_recipe"][sub]
    assert model["overall"]["fmse"] > 0


def test_evaluate_with_the_authors_protocol_and_their_checkpoint(sample_dataset, tmp_path):
    make_iharmony4(tmp_path / "ih", sample_dataset, n=4)
    torch.manual_seed(0)
    torch.save(to_authors(HTPlus(TrainConfig().model, 256).state_dict()), tmp_path / "latest_net_G.pth")
    args = ["evaluate", str(tmp_path / "latest_net_G.pth"), "--data", str(tmp_path / "ih"), "--split", "test",
            "--protocol", "ht", "--workers", "0", "--batch-size", "2", "--out", str(tmp_path / "eval")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["protocol"] == "ht" and report["metrics"]["overall"]["n"] == 4
    assert set(report["metrics"]["by_recipe"]) == {"HCOCO", "HFlickr"}
    table = (tmp_path / "eval" / "metrics.md").read_text()
    assert "protocol ht" in table and "| DoveNet | 52.36 | 549.96 | 34.75 |" in table
