"""The training stage's parts: model, attention, sine encoding, metrics, loader, checkpoints."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import build
from schemas.train_config import ModelConfig, TrainData
from train.loader import Loader, taken_per_worker
from train.metrics import Metrics, per_image
from train.models import Attention, HTPlus, TextHTPlus, count_parameters, sine_encoding
from train.sources import DataError, open_source

TINY = ModelConfig(dim=32, depth=2, heads=2, ffn=64)


@pytest.fixture(scope="module")
def small_groups(prefect_server, tmp_path_factory):
    """The sample with row groups of ~2 rows: many loading units per split."""
    out = tmp_path_factory.mktemp("groups") / "out"
    build(out, "shards.row_group_bytes=65536")
    return out


def test_ht_plus_has_the_papers_parameter_count():
    model = HTPlus(ModelConfig(), 256)
    assert count_parameters(model) == 4_772_867
    assert count_parameters(model.patch_embed) == 16_640
    assert count_parameters(model.layers[0]) == 527_104
    assert count_parameters(model.head) == 12_291


def test_sine_encoding_as_the_authors_code_makes_it():
    """HT's PatchPositionEmbeddingSine: positions 1..n as they are, 10,000^(2 floor(i/2) / n_f)."""
    pe = sine_encoding(2, 3, 8)
    y, x = 2.0, 3.0   # token (row 1, col 2)
    expect = [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100),
              math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)]
    assert torch.allclose(pe[5], torch.tensor(expect), atol=1e-6)
    assert pe[0, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)


def test_sine_encoding_values():
    pe = sine_encoding(2, 3, 8, normalize=True)  # 4 features per axis: y first, then x
    assert pe.shape == (6, 8)
    two_pi = 2 * math.pi
    # token (row 1, col 2): y = 2/2 * 2pi, x = 3/3 * 2pi; frequencies 1, 1, 100, 100
    y, x = 2 / (2 + 1e-6) * two_pi, 3 / (3 + 1e-6) * two_pi
    expect = [
        math.sin(y),
        math.cos(y),
        math.sin(y / 100),
        math.cos(y / 100),
        math.sin(x),
        math.cos(x),
        math.sin(x / 100),
        math.cos(x / 100),
    ]
    assert torch.allclose(pe[5], torch.tensor(expect), atol=1e-6)
    # token (row 0, col 0): y = pi, x = 2pi/3
    y, x = 1 / (2 + 1e-6) * two_pi, 1 / (3 + 1e-6) * two_pi
    assert pe[0, 0].item() == pytest.approx(math.sin(y), abs=1e-6)
    assert pe[0, 4].item() == pytest.approx(math.sin(x), abs=1e-6)
    assert pe[0, 7].item() == pytest.approx(math.cos(x / 100), abs=1e-6)


def test_sdpa_attention_equals_naive_attention():
    torch.manual_seed(0)
    fused = Attention(32, 2, fused=True)
    naive = Attention(32, 2, fused=False)
    naive.load_state_dict(fused.state_dict())
    x, pos = torch.randn(2, 50, 32), torch.randn(1, 50, 32)
    assert torch.allclose(fused(x, pos), naive(x, pos), atol=1e-5)
    # and by hand: softmax((x+p)Wq (x+p)Wk^T / sqrt(d_head)) x Wv, per head
    w, b = fused.in_proj.weight, fused.in_proj.bias
    q, k, v = (x + pos) @ w[:32].T + b[:32], (x + pos) @ w[32:64].T + b[32:64], x @ w[64:].T + b[64:]
    heads = []
    for h in range(2):
        s = slice(16 * h, 16 * (h + 1))
        heads.append(torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 4.0, -1) @ v[..., s])
    by_hand = fused.out_proj(torch.cat(heads, -1))
    assert torch.allclose(fused(x, pos), by_hand, atol=1e-5)


def test_text_model_is_ht_plus_at_initialisation():
    torch.manual_seed(3)
    ht = HTPlus(TINY, 32)
    torch.manual_seed(3)
    text = TextHTPlus(TINY.model_copy(update={"kind": "ht_text"}), 32, 16)
    comp, mask = torch.rand(3, 3, 32, 32), (torch.rand(3, 1, 32, 32) > 0.5).float()
    a = ht(comp, mask)
    for phrase in (torch.randn(3, 16), torch.randn(3, 16) * 10):
        assert torch.equal(a, text(comp, mask, {"clip_phrase": phrase}))
    with pytest.raises(ValueError, match="clip_phrase"):
        text(comp, mask, {})


def test_metrics_against_hand_computed_values():
    target = torch.zeros(2, 3, 2, 2)
    pred = torch.zeros(2, 3, 2, 2)
    mask = torch.zeros(2, 1, 2, 2)
    pred[0, :, 0, 0] = 10 / 255  # one foreground pixel off by 10 in every channel
    mask[0, 0, 0, 0] = 1
    pred[1] = 1 / 255  # everything off by 1; foreground = two pixels
    mask[1, 0, 0] = 1
    v = per_image(pred, target, mask)
    assert v["mse"].tolist() == pytest.approx([300 / 12, 1.0])
    assert v["fmse"].tolist() == pytest.approx([100.0, 1.0])
    assert v["psnr"].tolist() == pytest.approx([10 * math.log10(255**2 / 25), 10 * math.log10(255**2)])
    assert v["fpsnr"].tolist() == pytest.approx([10 * math.log10(255**2 / 100), 10 * math.log10(255**2)])
    assert v["fg_ratio"].tolist() == pytest.approx([0.25, 0.5])
    m = Metrics()
    m.add(v, ["a", "b"])
    s = m.summary()
    assert s["overall"]["n"] == 2 and s["overall"]["fmse"] == pytest.approx(50.5)
    assert s["by_recipe"]["a"]["mse"] == pytest.approx(25.0)
    assert s["by_fg_ratio"]["15-100%"]["n"] == 2 and s["by_fg_ratio"]["0-5%"]["n"] == 0
    exact = per_image(target, target, mask)
    assert exact["psnr"].tolist() == [100.0, 100.0]  # the cap, as the card's


def test_identity_predictor_reproduces_the_card(sample_dataset):
    """Output = composite: the card's composite-vs-target numbers (computed before JPEG
    encoding), up to JPEG rounding."""
    source = open_source(sample_dataset)
    m = Metrics()
    for split in source.splits():
        for batch in Loader(source, split, TrainData(workers=0), 16, 0, train=False).epoch(0):
            m.add(per_image(batch["composite"], batch["target"], batch["mask"]), batch["recipe"])
    ours = m.summary()
    card = (sample_dataset / "README.md").read_text()
    rows = {
        r[0]: r
        for r in re.findall(
            r"^\| (all|recipe \w+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| [\d.]+x \| [\d.]+% \| ([\d.]+) \|",
            card, re.M,
        )
    }
    groups = [("all", ours["overall"])] + [(f"recipe {k}", v) for k, v in ours["by_recipe"].items()]
    for label, got in groups:
        _, n, mse, fmse, psnr = rows[label]
        assert got["n"] == int(n)
        assert got["mse"] == pytest.approx(float(mse), rel=0.03, abs=0.5), label
        assert got["fmse"] == pytest.approx(float(fmse), rel=0.03, abs=0.5), label
        assert got["psnr"] == pytest.approx(float(psnr), abs=0.3), label


def _epoch_ids(dataset, epoch, world=2, workers=2, seed=0, batch=3):
    per_rank = []
    for rank in range(world):
        loader = Loader(
            open_source(dataset),
            "train",
            TrainData(size=32, workers=workers),
            batch,
            seed,
            train=True,
            rank=rank,
            world=world,
        )
        per_rank.append([i for b in loader.epoch(epoch) for i in b["sample_id"]])
        loader.close()
    return per_rank


def test_loader_yields_each_row_once_across_ranks_and_workers(small_groups):
    expected = [
        sid
        for p in sorted((small_groups / "data" / "train").glob("*.parquet"))
        for sid in pq.read_table(p, columns=["sample_id"])["sample_id"].to_pylist()
    ]
    assert (
        len(
            pq.ParquetFile(next((small_groups / "data" / "train").glob("*.parquet"))).metadata.to_dict()[
                "row_groups"
            ]
        )
        > 2
    )
    first = _epoch_ids(small_groups, 0)
    ids = first[0] + first[1]
    assert sorted(ids) == sorted(expected) and len(set(ids)) == len(ids)
    assert all(first)  # both ranks have rows
    assert _epoch_ids(small_groups, 0) == first  # same seed, same order
    second = _epoch_ids(small_groups, 1)
    assert sorted(second[0] + second[1]) == sorted(expected) and second != first
    assert _epoch_ids(small_groups, 0, seed=1) != first


def test_loader_resumes_mid_epoch_with_the_same_batches(small_groups):
    loader = Loader(open_source(small_groups), "train", TrainData(size=32, workers=2), 3, 0, train=True)
    full = [(b["index"], b["sample_id"], b["composite"]) for b in loader.epoch(2)]
    for start in (1, 4, len(full) - 1):
        tail = [(b["index"], b["sample_id"], b["composite"]) for b in loader.epoch(2, start)]
        assert [t[:2] for t in tail] == [f[:2] for f in full[start:]]
        assert all(torch.equal(a[2], b[2]) for a, b in zip(tail, full[start:]))
    loader.close()
    assert taken_per_worker([3, 1, 2], 4) == [2, 1, 1]
    assert taken_per_worker([3, 1, 2], 6) == [3, 1, 2]


def test_flip_is_joint_and_batches_are_floats_in_unit_range(sample_dataset):
    source = open_source(sample_dataset)
    plain = Loader(source, "train", TrainData(size=64, workers=0, flip=False), 4, 0, train=True)
    flipped = Loader(source, "train", TrainData(size=64, workers=0, flip=True), 4, 0, train=True)
    b0, b1 = next(plain.epoch(0)), next(flipped.epoch(0))
    assert b0["sample_id"] == b1["sample_id"]
    assert b0["composite"].dtype == torch.float32 and b0["composite"].shape == (4, 3, 64, 64)
    assert b0["mask"].shape == (4, 1, 64, 64) and set(b0["mask"].unique().tolist()) <= {0.0, 1.0}
    assert 0 <= b0["target"].min() and b0["target"].max() <= 1
    n_flipped = 0
    for i in range(4):
        same = torch.equal(b0["composite"][i], b1["composite"][i])
        mirrored = all(torch.equal(b0[k][i].flip(-1), b1[k][i]) for k in ("composite", "target", "mask"))
        assert same or mirrored
        n_flipped += not same
    assert n_flipped  # seed 0 flips some of the first four


def test_selection_by_recipe_and_foreground_ratio(sample_dataset):
    tables = [
        pq.read_table(p, columns=["recipe", "fg_ratio"])
        for p in sorted((sample_dataset / "data" / "train").glob("*.parquet"))
    ]
    recipe = np.concatenate([x["recipe"].to_numpy(zero_copy_only=False) for x in tables])
    fg = np.concatenate([x["fg_ratio"].to_numpy() for x in tables])
    data = TrainData(recipes=("lut_fg",), fg_ratio=(0.05, 1.0), workers=0)
    loader = Loader(open_source(sample_dataset), "train", data, 4, 0, train=True)
    assert loader.rows == int(((recipe == "lut_fg") & (fg >= 0.05)).sum()) > 0
    got = [r for b in loader.epoch(0) for r in b["recipe"]]
    assert set(got) == {"lut_fg"} and len(got) == loader.rows
    with pytest.raises(DataError, match=r"no rows in split 'train' with recipes \['nope'\].*splits there"):
        Loader(open_source(sample_dataset), "train", TrainData(recipes=("nope",)), 4, 0, train=True)


def test_losses_and_schedule_against_hand_computed_values():
    from schemas.train_config import load_train_config
    from train.loop import lr_factor
    from train.losses import fn_mse_loss, l1_loss

    target = torch.zeros(2, 3, 2, 2)
    out = torch.zeros(2, 3, 2, 2)
    out[0, :, 0, 0] = 0.5  # 3 values off by 0.5 ([-1, 1] scale: 1.0) out of 24
    mask = torch.zeros(2, 1, 2, 2)
    mask[0, 0, 0, 0] = 1
    assert l1_loss(100.0)(out, target, mask).item() == pytest.approx(100 * 0.5 * 3 / 24)   # the authors'
    assert l1_loss(100.0, 2.0)(out, target, mask).item() == pytest.approx(100 * 3 / 24)
    # per image: sum of squares (0-255) / (3 * max(area, A_min)), then the batch mean
    assert fn_mse_loss(1.0)(out, target, mask).item() == pytest.approx((3 * 127.5**2 / 3 + 0) / 2)
    assert fn_mse_loss(100.0)(out, target, mask).item() == pytest.approx((3 * 127.5**2 / 300) / 2)
    cfg = load_train_config(None, ["steps=10", "optim.warmup_steps=2", "optim.decay_start=0.5",
                                   "optim.schedule=step"])
    f = lr_factor(cfg)
    assert [round(f(s), 3) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2]
    # The authors': set per epoch, 1 - max(0, e + 1 - 30) / 31 over 60 epochs (here of 3 steps).
    cfg = load_train_config(None, ["steps=180", "optim.decay_start=0.5"])
    f = lr_factor(cfg, steps_per_epoch=3)
    assert [f(3 * e) for e in (0, 29, 30, 59)] == [1.0, 1.0, 1 - 1 / 31, 1 - 30 / 31]
    assert f(3 * 30 + 2) == f(3 * 30)   # constant within an epoch


def test_the_shipped_training_configs_load():
    from conftest import REPO
    from schemas.train_config import load_train_config
    from train.models import build_model

    configs = {p.name: load_train_config(p) for p in sorted((REPO / "configs").glob("*.yaml"))
               if p.name.startswith(("train-", "finetune-"))}
    assert set(configs) == {"train-sample.yaml", "train-ht.yaml", "train-ht-text.yaml",
                            "train-clipseg-ht.yaml", "finetune-iharmony4.yaml"}
    fine = configs["finetune-iharmony4.yaml"]
    assert fine.init_from == Path("runs/train-ht") and [p.weight for p in fine.data.sources] == [0.8, 0.2]
    ht = configs["train-ht.yaml"]
    assert count_parameters(build_model(ht.model, ht.data.size)) == 4_772_867
    assert ht.optim.lr == 1e-4 and ht.optim.betas == (0.5, 0.999) and ht.batch_size == 8
    assert configs["train-ht-text.yaml"].model.kind == "ht_text"
    cs = configs["train-clipseg-ht.yaml"]
    assert (cs.model.kind, cs.model.region, cs.model.text) == \
        ("clipseg_ht", "refined", None)
    # HT+ inside it is the paper's, with its recipe.
    same = ("dim", "depth", "heads", "ffn", "patch")
    assert {k: cs.model_signature()[k] for k in same} == {k: ht.model_signature()[k] for k in same}
    assert (cs.optim.lr, cs.batch_size, cs.steps) == (ht.optim.lr, ht.batch_size, ht.steps)
