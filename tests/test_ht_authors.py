"""HT+ as its authors' code builds it: a forward pass written by hand from the description
(TRAINING.md), their state-dict names and patch layout, their checkpoint file."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from schemas.train_config import ModelConfig, TrainConfig
from train.checkpoint import CheckpointError, resolve
from train.evaluate import load_model
from train.ht_authors import from_authors, to_authors
from train.models import HTPlus

SMALL = ModelConfig(dim=32, depth=2, heads=2, ffn=64)


def by_hand(state: dict, comp: torch.Tensor, mask: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """HT+ from its description, on a state dict in the authors' names: 4x4 patches of
    (composite in [0, 1], mask) flattened (p1 p2 c), a Linear, post-norm layers with
    nn.MultiheadAttention (positions on queries and keys), GELU FFN, a transposed
    convolution, the raw tanh."""
    b, _, h, w = comp.shape
    p, d = cfg.patch, cfg.dim
    x = torch.cat([comp, mask], 1)                                         # b c H W
    g = h // p
    tokens = x.reshape(b, 4, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, p * p * 4)  # (p1 p2 c)
    t = F.linear(tokens, state["patch_to_embedding.1.weight"], state["patch_to_embedding.1.bias"])
    # DETR's sine on positions 1..g (cumulative sums), y features then x.
    half = d // 2
    dim_t = 10000 ** (2 * (torch.arange(half) // 2) / half)
    ys = torch.arange(1, g + 1, dtype=torch.float32)
    pos = []
    for yy in ys:
        for xx in ys:
            feats = []
            for v in (yy, xx):
                a = v / dim_t
                feats.append(torch.stack([a[0::2].sin(), a[1::2].cos()], dim=1).flatten())
            pos.append(torch.cat(feats))
    pos = torch.stack(pos)[None]                                           # 1 (g g) d
    for i in range(cfg.depth):
        pre = f"transformer_enc.encoder.layers.{i}."
        mha = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        mha.load_state_dict({"in_proj_weight": state[pre + "self_attn.in_proj_weight"],
                             "in_proj_bias": state[pre + "self_attn.in_proj_bias"],
                             "out_proj.weight": state[pre + "self_attn.out_proj.weight"],
                             "out_proj.bias": state[pre + "self_attn.out_proj.bias"]})
        q = t + pos
        t = F.layer_norm(t + mha(q, q, t, need_weights=False)[0], (d,), state[pre + "norm1.weight"],
                         state[pre + "norm1.bias"])
        ffn = F.linear(F.gelu(F.linear(t, state[pre + "linear1.weight"], state[pre + "linear1.bias"])),
                       state[pre + "linear2.weight"], state[pre + "linear2.bias"])
        t = F.layer_norm(t + ffn, (d,), state[pre + "norm2.weight"], state[pre + "norm2.bias"])
    grid = t.transpose(1, 2).reshape(b, d, g, g)
    return torch.tanh(F.conv_transpose2d(grid, state["dec.0.weight"], state["dec.0.bias"], stride=p))


def test_ht_plus_is_the_by_hand_forward_on_the_authors_layout():
    torch.manual_seed(0)
    ours = HTPlus(SMALL, 32).eval()
    theirs = to_authors(ours.state_dict())
    assert set(theirs) >= {"patch_to_embedding.1.weight", "dec.0.weight",
                           "transformer_enc.encoder.layers.1.self_attn.in_proj_weight"}
    comp, mask = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    with torch.no_grad():
        mine = ours(comp, mask)
        hand = by_hand(theirs, comp, mask, SMALL)
    assert torch.allclose(mine, hand, atol=2e-5), (mine - hand).abs().max()
    assert mine.min() < 0   # the raw tanh: not mapped into [0, 1]
    # Their state dict (with DDP's module. prefix) loads and gives the same output.
    twin = HTPlus(SMALL, 32).eval()
    twin.load_state_dict(from_authors({f"module.{k}": v for k, v in theirs.items()}))
    with torch.no_grad():
        assert torch.equal(twin(comp, mask), mine)


def test_the_earlier_choices_stay_options():
    torch.manual_seed(0)
    cfg = SMALL.model_copy(update={"input_range": "symmetric", "output": "unit_tanh",
                                   "positions": "normalized", "init": "normal"})
    model = HTPlus(cfg, 32).eval()
    comp, mask = torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    with torch.no_grad():
        out = model(comp, mask)
    assert 0 <= out.min() and out.max() <= 1
    assert model.pos[0, 0].item() == pytest.approx(math.sin(2 * math.pi / 8), abs=1e-6)   # 1/8 of 2 pi
    assert model.layers[0].attn.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    authors = HTPlus(SMALL, 32)   # xavier-uniform: std sqrt(2 / (32 + 96))
    assert authors.layers[0].attn.in_proj.weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.1)
    assert authors.layers[0].ffn[0].weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_the_authors_checkpoint_file_loads_as_a_checkpoint(tmp_path):
    torch.manual_seed(2)
    ours = HTPlus(TrainConfig().model, 256).eval()   # the paper's size: what their file holds
    path = tmp_path / "latest_net_G.pth"
    torch.save(to_authors(ours.state_dict()), path)
    for given in (path, tmp_path):   # the file, or the folder holding it
        model, cfg, meta = load_model(resolve(given), torch.device("cpu"))
        assert meta["source"] == "authors" and cfg.data.size == 256
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ours.state_dict().values()))
    bad = to_authors(ours.state_dict())
    bad["transformer_enc.encoder.layers.0.extra"] = torch.zeros(1)
    torch.save(bad, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="'transformer_enc.encoder.layers.0.extra' HT\\+ does not have"):
        load_model(tmp_path / "odd.pth", torch.device("cpu"))
    small = to_authors(HTPlus(SMALL, 32).state_dict())
    torch.save(small, tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="not HT\\+ at the paper's size"):
        load_model(tmp_path / "small.pth", torch.device("cpu"))
