"""Pretrain, then fine-tune: a run starts from another run's weights (ours or the authors'),
and trains on several datasets at once, each at its weight."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from test_train_runs import cfg, losses

from conftest import make_iharmony4
from schemas.config import ConfigError
from schemas.train_config import TrainData, load_train_config
from train.checkpoint import CheckpointError, load_weights, read_meta, resolve
from train.evaluate import load_model
from train.ht_authors import to_authors
from train.loader import Loader
from train.loop import train
from train.mix import training_source
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


def _mix(sample_dataset: Path, ih: Path, *weights: float, epoch_rows: int | None = None) -> TrainData:
    return TrainData(dir=ih, size=32, workers=0, epoch_rows=epoch_rows, sources=[
        {"dir": sample_dataset, "weight": weights[0]}, {"dir": ih, "weight": weights[1]}])


def _drawn(data: TrainData, epoch: int) -> list[str]:
    loader = Loader(training_source(data), "train", data, 4, 0, train=True)
    return [s for b in loader.epoch(epoch) for s in b["sample_id"]]


def test_a_two_source_run_draws_each_at_its_weight(sample_dataset, tmp_path):
    ih = tmp_path / "ih"
    make_iharmony4(ih, sample_dataset, n=6, split="train")
    ours = Loader(open_source(sample_dataset), "train", TrainData(size=32, workers=0), 4, 0, train=True).rows
    total = ours + 6
    for weights in ((1, 3), (3, 1)):
        data = _mix(sample_dataset, ih, *weights)
        first = _drawn(data, 0)
        from_ih = [s for s in first if s.startswith(("HCOCO/", "HFlickr/"))]
        assert len(first) == total   # an epoch is as long as the two together
        assert len(from_ih) == round(total * weights[1] / sum(weights))
        assert first == _drawn(data, 0) and first != _drawn(data, 1)   # fixed per (seed, epoch)
    # iHarmony4 at 3/4 of a 6 + ours-row epoch: its 6 rows repeat, each at most once more
    # than any other.
    counts = Counter(s for s in _drawn(_mix(sample_dataset, ih, 1, 3), 0) if s.startswith("H"))
    assert len(counts) == 6 and max(counts.values()) - min(counts.values()) <= 1
    # data.epoch_rows sets the epoch's length; the shares stay.
    short = _drawn(_mix(sample_dataset, ih, 1, 1, epoch_rows=10), 0)
    assert len(short) == 10 and sum(s.startswith("H") for s in short) == 5
    with pytest.raises(ValueError, match="epoch_rows sets the length of a mix's epoch"):
        TrainData(epoch_rows=10)


def test_a_mixed_run_trains_validates_on_dir_and_resumes(sample_dataset, tmp_path):
    ih = tmp_path / "ih"
    make_iharmony4(ih, sample_dataset, n=6, split="train")
    sources = f"data.sources=[{{dir: {sample_dataset}, weight: 1}}, {{dir: {ih}, weight: 1}}]"
    messages: list[str] = []
    run = tmp_path / "mixed"
    train(cfg(sample_dataset, run, sources, "steps=3", "val_every=3"), say=messages.append)
    assert any(f"{sample_dataset} (50%) + {ih} (50%)" in m for m in messages)
    assert 3 in _val(run)
    with pytest.raises(ConfigError, match="set dir too"):
        load_train_config(None, [sources])
    with pytest.raises(CheckpointError, match="another version of the dataset"):
        train(cfg(sample_dataset, run, sources.replace("weight: 1}]", "weight: 2}]"), "steps=4",
                  "val_every=3"), resume=True, say=None)
