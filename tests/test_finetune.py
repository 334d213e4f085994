"""Pretrain, then fine-tune: a run starts from another run's weights (ours or the authors')."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_runs import cfg, losses

from schemas.train_config import TrainData
from train.checkpoint import CheckpointError, load_weights, read_meta, resolve
from train.evaluate import load_model
from train.ht_authors import to_authors
from train.loader import Loader
from train.loop import train
from train.sources import open_source


@pytest.fixture(scope="module")
def pretrained(sample_dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pre") / "run"
    train(cfg(sample_dataset, run, "steps=6", "val_every=6", "optim.lr=3e-3"), say=None)
    return run


def _val(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if r["kind"] == "val"}


def _batch(data: Path, **kw):
    loader = Loader(open_source(data), "val", TrainData(size=32, workers=0), 4, 0, train=False, **kw)
    return next(loader.epoch(0))


def _first_model(data: Path, out: Path, *extra: str) -> torch.nn.Module:
    """The model a run starts from: one step at a learning rate far below float32's resolution."""
    summary = train(cfg(data, out, "steps=1", "val_every=1", "optim.lr=1e-15", *extra), say=None)
    return load_model(Path(summary["checkpoint"]), torch.device("cpu"))[0]


def test_a_run_starts_where_its_source_ended(sample_dataset, pretrained, tmp_path):
    messages: list[str] = []
    run = tmp_path / "fine"
    summary = train(cfg(sample_dataset, run, "steps=1", "val_every=1", "optim.lr=1e-15",
                        f"init_from={pretrained}"), say=messages.append)
    ours = load_weights(resolve(Path(summary["checkpoint"])))
    theirs = load_weights(resolve(pretrained))
    assert ours.keys() == theirs.keys() and all(torch.allclose(ours[k], theirs[k], atol=1e-7) for k in ours)
    assert any(m.startswith(f"initialised from {resolve(pretrained)}") for m in messages)
    assert read_meta(resolve(Path(summary["checkpoint"])))["init_from"].startswith(f"{pretrained}@")
    # The optimizer and the schedule start afresh: the new run counts from step 1.
    assert losses(run)[0][0] == 1
    # On the same validation batches it scores what the source scored at its last step.
    assert _val(run)[1]["mse"] == pytest.approx(_val(pretrained)[6]["mse"], rel=1e-5)


def test_hts_weights_start_the_text_and_phrase_models_as_the_source(captioned, pretrained, clipseg, tmp_path):
    source = load_model(resolve(pretrained), torch.device("cpu"))[0]
    batch = _batch(captioned, text_keys=("clip_phrase",))
    text = _first_model(captioned, tmp_path / "text", "model.kind=ht_text", f"init_from={pretrained}")
    with torch.no_grad():
        expected = source(batch["composite"], batch["mask"])
        got = text(batch["composite"], batch["mask"], {"clip_phrase": batch["clip_phrase"]})
    assert torch.allclose(got, expected, atol=1e-5)   # adaLN-Zero: the phrase starts with no say
    phrase = _first_model(captioned, tmp_path / "cs", "model.kind=clipseg_ht", f"model.clipseg={clipseg}",
                          "model.region=gt", f"init_from={pretrained}")
    own = phrase.ht.state_dict()
    assert all(torch.allclose(own[k], v, atol=1e-7) for k, v in source.state_dict().items())


def test_the_authors_file_starts_a_run(sample_dataset, pretrained, tmp_path):
    authors = tmp_path / "latest_net_G.pth"
    torch.save(to_authors(load_weights(resolve(pretrained))), authors)
    model = _first_model(sample_dataset, tmp_path / "a", f"init_from={authors}")
    source = load_weights(resolve(pretrained))
    assert all(torch.allclose(model.state_dict()[k], v, atol=1e-7) for k, v in source.items())


def test_a_source_of_another_shape_is_refused_naming_the_tensor(sample_dataset, pretrained, tmp_path):
    shapes = r"'head.weight' is \(32, 3, 4, 4\) there and \(48, 3, 4, 4\) here"
    with pytest.raises(CheckpointError, match=shapes):
        train(cfg(sample_dataset, tmp_path / "r", "steps=1", "model.dim=48", f"init_from={pretrained}"),
              say=None)
    with pytest.raises(CheckpointError, match="no place in a HTPlus"):
        train(cfg(sample_dataset, tmp_path / "r2", "steps=1", "model.depth=1", f"init_from={pretrained}"),
              say=None)


def test_a_missing_source_is_one_line_before_training(sample_dataset, tmp_path):
    from train.preflight import check_run

    with pytest.raises(CheckpointError, match=r"nothing: no checkpoint here"):
        check_run(cfg(sample_dataset, tmp_path / "r", f"init_from={tmp_path / 'nothing'}"))
    (tmp_path / "latest_net_G.pth").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"latest_net_G.pth: cannot be loaded"):
        check_run(cfg(sample_dataset, tmp_path / "r", f"init_from={tmp_path / 'latest_net_G.pth'}"))
