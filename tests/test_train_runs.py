"""Training runs end to end on this CPU (tiny models, 32x32): overfitting, exact resume,
DDP under torchrun, the text-guided model, the Prefect flow, evaluation, bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import REPO, make_iharmony4, rewrite_shard
from schemas.errors import UserError
from schemas.train_config import ModelConfig, TrainData, load_train_config
from train.checkpoint import CheckpointError
from train.evaluate import load_model
from train.loader import Loader
from train.loop import TrainingError, train
from train.losses import l1_loss
from train.models import HTPlus
from train.sources import DataError, open_source

TINY = [
    "data.size=32",
    "model.dim=32",
    "model.depth=2",
    "model.heads=2",
    "model.ffn=64",
    "batch_size=4",
    "optim.lr=1e-3",
    "log_every=1",
    "val_batches=2",
    "data.workers=2",
]


def cfg(data: Path, out: Path, *extra: str):
    return load_train_config(None, [f"data.dir={data}", f"out_dir={out}", *TINY, *extra])


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]


def test_a_tiny_model_overfits_a_fixed_batch(sample_dataset):
    batch = next(
        Loader(open_source(sample_dataset), "train", TrainData(size=32, workers=0), 8, 0, train=True).epoch(0)
    )
    torch.manual_seed(0)
    model = HTPlus(ModelConfig(dim=32, depth=2, heads=2, ffn=64), 32)
    opt = torch.optim.Adam(model.parameters(), 1e-3, betas=(0.5, 0.999))
    loss_fn = l1_loss(100.0)
    first = None
    for step in range(300):
        loss = loss_fn(model(batch["composite"], batch["mask"]), batch["target"], batch["mask"])
        first = first or loss.item()
        if loss.item() < 0.3 * first:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first, (first, loss.item(), step)


def test_resume_equals_an_uninterrupted_run(sample_dataset, tmp_path):
    settings = ["steps=24", "checkpoint_every=8", "val_every=12"]
    straight = tmp_path / "straight"
    train(cfg(sample_dataset, straight, *settings), say=None)

    def stop_after_step_19(message: str) -> None:  # a kill between checkpoints (step 16)
        if message.startswith("step 19/"):
            raise KeyboardInterrupt

    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(cfg(sample_dataset, broken, *settings), say=stop_after_step_19)
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["step-00000008", "step-00000016"]
    with pytest.raises(UserError, match="already has checkpoints; continue it with --resume"):
        train(cfg(sample_dataset, broken, *settings), say=None)
    said = []
    summary = train(cfg(sample_dataset, broken, *settings), resume=True, say=said.append)
    assert any("resuming from" in s and "step 16" in s for s in said)
    assert summary["steps"] == 24
    assert losses(broken) == losses(straight) and len(losses(straight)) == 24  # the log reads as one run
    a = load_model(broken / "checkpoints" / "step-00000024", torch.device("cpu"))[0].state_dict()
    b = load_model(straight / "checkpoints" / "step-00000024", torch.device("cpu"))[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The epoch boundary is crossed (11 batches of 4 rows per epoch) and checkpoints hold it.
    assert json.loads((broken / "log.jsonl").read_text().splitlines()[-1])["kind"] in ("train", "val")


def test_a_checkpoint_of_another_model_is_refused_naming_the_difference(sample_dataset, tmp_path):
    train(cfg(sample_dataset, tmp_path / "run", "steps=2"), say=None)
    with pytest.raises(CheckpointError, match=r"another model config \(dim: checkpoint 32, config 16\)"):
        train(cfg(sample_dataset, tmp_path / "run", "steps=4", "model.dim=16"), resume=True, say=None)
    with pytest.raises(CheckpointError, match="other training settings"):
        train(cfg(sample_dataset, tmp_path / "run", "steps=4", "optim.lr=0.5"), resume=True, say=None)


def test_torchrun_with_two_gloo_processes_keeps_the_ranks_identical(sample_dataset, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    args = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "train",
        *[
            f"--set={s}"
            for s in [
                f"data.dir={sample_dataset}",
                f"out_dir={tmp_path / 'ddp'}",
                *TINY,
                "steps=6",
                "data.workers=0",
                "val_every=6",
            ]
        ],
    ]
    done = subprocess.run(
        args,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 6 and len(summary["weights_by_rank"]) == 2
    assert len(set(summary["weights_by_rank"])) == 1
    assert (tmp_path / "ddp" / "checkpoints" / "step-00000006" / "model.safetensors").exists()


def test_the_text_guided_model_learns_to_use_the_phrase(captioned, tmp_path):
    run = tmp_path / "text"
    summary = train(cfg(captioned, run, "model.kind=ht_text", "steps=12", "optim.lr=3e-3"), say=None)
    model, _, meta = load_model(Path(summary["checkpoint"]), torch.device("cpu"))
    batch = next(
        Loader(
            open_source(captioned),
            "train",
            TrainData(size=32, workers=0),
            4,
            0,
            train=False,
            text_keys=("clip_phrase",),
        ).epoch(0)
    )
    assert batch["clip_phrase"].shape == (4, int(meta["text_dim"]))
    with torch.no_grad():
        a = model(batch["composite"], batch["mask"], {"clip_phrase": batch["clip_phrase"]})
        b = model(batch["composite"], batch["mask"], {"clip_phrase": batch["clip_phrase"].roll(1, 0)})
    assert (a - b).abs().max() > 1e-3  # at step 0 the two would be equal (adaLN-Zero)


def test_the_flow_trains_evaluates_and_publishes(sample_dataset, tmp_path, prefect_server):
    from prefect.client.orchestration import get_client
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.train_harmonizer import train_harmonizer

    run = tmp_path / "flow"
    result = train_harmonizer(
        config=str(REPO / "configs" / "train-sample.yaml"),
        overrides=[
            f"data.dir={sample_dataset}",
            f"out_dir={run}",
            "steps=10",
            "val_every=5",
            "checkpoint_every=5",
        ],
    )
    splits = json.loads((sample_dataset / "_manifest.json").read_text())["splits"]
    assert result["dataset"]["rows"] == splits["train"]["rows"] and result["train"]["steps"] == 10
    table = Path(result["evaluation"]["metrics_md"]).read_text()
    assert "input fMSE" in table and f"| all | {splits['test']['rows']} |" in table  # the test split
    assert (run / "val" / "step-00000005.png").exists() and (run / "checkpoints" / "step-00000010").is_dir()

    async def artifact():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    import asyncio

    keys = {a.key: a for a in asyncio.run(artifact())}
    assert "data:image/png;base64," in keys["train-train-sample"].data

    cli = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(run),
            "--data",
            str(sample_dataset),
            "--split",
            "val",
            "--workers",
            "0",
            "--out",
            str(tmp_path / "eval"),
        ],
    )
    assert cli.exit_code == 0, cli.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["split"] == "val" and report["metrics"]["overall"]["n"] == splits["val"]["rows"] >= 3
    assert report["step"] == 10 and (tmp_path / "eval" / "grid.png").exists()


def test_bad_inputs_are_one_clear_error_or_a_counted_skip(sample_copy, tmp_path):
    # A row whose composite does not decode: a counted skip with its sample id.
    shard = sample_copy / "data" / "train" / "part-00000.parquet"
    table = pq.read_table(shard)
    comps = table["composite"].to_pylist()
    comps[3] = b"\xff\xd8 not a jpeg"
    bad_id = table["sample_id"][3].as_py()
    rewrite_shard(
        sample_copy,
        "data/train/part-00000.parquet",
        table.set_column(
            table.schema.get_field_index("composite"), "composite", pa.array(comps, pa.binary())
        ),
    )
    said = []
    train(cfg(sample_copy, tmp_path / "skip", "steps=12"), say=said.append)
    assert any("skipped rows {'undecodable_image': 1}" in s and bad_id in s for s in said)
    # A model that needs text embeddings on a build without captions.
    with pytest.raises(DataError, match="built without captions"):
        train(cfg(sample_copy, tmp_path / "t", "model.kind=ht_text"), say=None)
    # A non-finite loss stops at once with the step and the batch's sample ids.
    with pytest.raises(
        TrainingError, match=r"step 1 \(epoch 0, batch 0\): the loss is inf, batch sample ids \["
    ):
        train(cfg(sample_copy, tmp_path / "nan", "optim.l1_weight=1e39"), say=None)
    # A shard that cannot be read: the error names it.
    (sample_copy / "data" / "val" / "part-00000.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(DataError, match=r"data/val/part-00000.parquet: 14 bytes, the manifest says"):
        open_source(sample_copy)
    rewrite_shard(sample_copy, "data/val/part-00000.parquet", b"PAR1 truncated")   # (the manifest too)
    with pytest.raises(DataError, match=r"data/val/part-00000.parquet: cannot read this shard"):
        Loader(open_source(sample_copy), "val", TrainData(), 4, 0, train=False)
    # No manifest: the dataset is not complete.
    (sample_copy / "_manifest.json").unlink()
    with pytest.raises(DataError, match=r"_manifest.json: no manifest, so the dataset is not complete"):
        train(cfg(sample_copy, tmp_path / "m"), say=None)
    with pytest.raises(DataError, match="no such dataset folder"):
        open_source(tmp_path / "nowhere")


def test_the_same_loader_reads_the_iharmony4_layout(sample_dataset, tmp_path):
    """A small iHarmony4-shaped folder written from the sample's rows."""
    root = tmp_path / "ih"
    names = make_iharmony4(root, sample_dataset, 5)
    names.append("HCOCO/composite_images/c9_9_1.jpg")  # listed, but its files are missing
    (root / "IHD_test.txt").write_text("\n".join(names) + "\n")
    loader = Loader(open_source(root), "test", TrainData(size=64, workers=0), 4, 0, train=False)
    batches = list(loader.epoch(0))
    got = [s for b in batches for s in b["sample_id"]]
    assert got == names[:5] and {r for b in batches for r in b["recipe"]} == {"HCOCO", "HFlickr"}
    assert batches[0]["composite"].shape == (4, 3, 64, 64)  # resized from 256
    assert loader.take_skip_report()["counts"] == {"missing_file": 1}
    with pytest.raises(DataError, match="iHarmony4 has the splits train and test"):
        Loader(open_source(root), "val", TrainData(), 4, 0, train=False)
    shutil.rmtree(root)
