"""What a user gets wrong in training is one line before any work, a counted skip inside a
batch, or a resume that says what it did: never a traceback or an answer of NaN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_train_runs import TINY, cfg, losses

from conftest import REPO, rewrite_shard
from schemas.errors import UserError
from train.checkpoint import CheckpointError
from train.evaluate import evaluate
from train.loop import train
from train.preflight import check_text
from train.sources import DataError, open_source


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), COLUMNS="300")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_bad_settings_and_datasets_are_one_line_exit_2_before_any_work(sample_copy, tmp_path, capsys):
    from train.__main__ import main

    base = [f"--set=data.dir={sample_copy}", f"--set=out_dir={tmp_path / 'r'}", *(f"--set={s}" for s in TINY)]
    # The first as a user runs it (a process of its own), the others through the same main().
    res = _cli("-m", "train", *base, "--set=data.size=66", home=tmp_path / "home")
    assert res.returncode == 2 and "data.size 66 must be a multiple of model.patch 4" in res.stderr, \
        res.stderr[-2000:]
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "r").exists()
    for setting, says in (("optim.betas=[2,3]", "betas must each be in [0, 1)"),
                          ("optim.lr=inf", "optim.lr: Input should be a finite number"),
                          ("data.val_split=nope", "no split 'nope' to validate on")):
        t0 = time.monotonic()
        assert main([*base, f"--set={setting}"]) == 2, setting
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, (setting, err)
        assert not (tmp_path / "r").exists() and time.monotonic() - t0 < 60
    # A dataset with no evaluation split: refused before training, not after it.
    manifest = json.loads((sample_copy / "_manifest.json").read_text())
    manifest["shards"] = [s for s in manifest["shards"] if s["split"] == "train"]
    (sample_copy / "_manifest.json").write_text(json.dumps(manifest))
    res = _cli("-m", "flows.cli", "train", "--config", str(REPO / "configs" / "train-sample.yaml"),
               "--set", f"data.dir={sample_copy}", "--set", f"out_dir={tmp_path / 'r'}",
               "--set", "data.val_split=null", home=tmp_path / "home")
    assert res.returncode == 2 and "nothing to evaluate the trained model on" in res.stdout, res.stdout
    assert "Traceback" not in res.stdout + res.stderr and not (tmp_path / "r").exists()
    # (checked before the Prefect server the command would start)
    assert not (tmp_path / "home" / "temporary-server.log").exists()


def test_resume_names_the_changed_settings_extends_steps_and_passes_over_a_damaged_checkpoint(
        sample_dataset, tmp_path):
    run = tmp_path / "run"

    def per_step(*settings):   # (the per-step schedule: the factors below are worked out for it)
        return cfg(sample_dataset, run, "optim.schedule=step", *settings)

    train(per_step("steps=4", "checkpoint_every=2", "val_every=4"), say=None)
    with pytest.raises(CheckpointError, match=r"other training settings \(batch_size: checkpoint 4, now 8; "
                                              r"optim.lr: checkpoint 0.001, now 0.5\)"):
        train(per_step("steps=4", "optim.lr=0.5", "batch_size=8"), resume=True, say=None)
    said: list[str] = []
    summary = train(per_step("steps=8", "checkpoint_every=2", "val_every=4"), resume=True,
                    say=said.append)
    assert summary["steps"] == 8 and [s for s, _ in losses(run)] == list(range(1, 9))
    assert any("steps 4 -> 8: learning-rate schedule recomputed for 8 steps; at step 4 its factor is 1"
               in s for s in said), said
    lrs = [json.loads(x)["lr"] for x in (run / "log.jsonl").read_text().splitlines()
           if json.loads(x)["kind"] == "train"]
    # (logged after each step: the rate the next step takes; the extension's first step took 1e-3)
    assert lrs[4:] == pytest.approx([1e-3 * f for f in (0.75, 0.5, 0.25, 0.0)], rel=1e-6, abs=1e-12)
    # The newest checkpoint damaged: the one before it is used, and it says so.
    (run / "checkpoints" / "step-00000008" / "state.pt").write_bytes(b"cut short")
    said.clear()
    summary = train(per_step("steps=10", "checkpoint_every=2", "val_every=4"), resume=True,
                    say=said.append)
    assert summary["steps"] == 10
    assert any("step-00000008/state.pt: cannot be loaded" in s and "passing over" in s for s in said), said
    assert any("resuming from" in s and "step-00000006" in s for s in said), said
    with pytest.raises(CheckpointError, match="already at step 10, past steps=6"):
        train(per_step("steps=6"), resume=True, say=None)


def test_text_checkpoints_refuse_data_they_cannot_read(captioned, sample_dataset, tmp_path):
    run = tmp_path / "text"
    summary = train(cfg(captioned, run, "model.kind=ht_text", "steps=2", "val_every=2"), say=None)
    with pytest.raises(DataError, match="without captions, so no CLIP text embeddings for the checkpoint"):
        evaluate(Path(summary["checkpoint"]), sample_dataset, "val", workers=0)
    source = open_source(captioned)
    with pytest.raises(DataError, match="its CLIP embeddings are 32-d, the model was trained on 512-d"):
        check_text(source, source.units("val"), ("clip_phrase",), "the model", 512)
    res = _cli("-m", "flows.cli", "evaluate", summary["checkpoint"], "--data", str(sample_dataset),
               "--split", "val", "--workers", "0", home=tmp_path / "home")
    assert res.returncode == 2 and "built without captions" in res.stdout and "Traceback" not in res.stderr


def test_a_composite_of_another_size_is_a_counted_skip(sample_copy, tmp_path):
    rel = "data/train/part-00000.parquet"
    table = pq.read_table(sample_copy / rel)
    comps = table["composite"].to_pylist()
    img = cv2.imdecode(np.frombuffer(comps[2], np.uint8), cv2.IMREAD_COLOR)
    comps[2] = cv2.imencode(".jpg", cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2)))[1].tobytes()
    bad = table["sample_id"][2].as_py()
    rewrite_shard(sample_copy, rel, table.set_column(table.schema.get_field_index("composite"), "composite",
                                                     pa.array(comps, pa.binary())))
    said: list[str] = []
    train(cfg(sample_copy, tmp_path / "r", "steps=12"), say=said.append)
    assert any("skipped rows {'size_mismatch': 1}" in s and bad in s for s in said), said
    # A shard changed behind the manifest's back is refused at the start.
    (sample_copy / rel).write_bytes((sample_copy / rel).read_bytes() + b"\0")
    with pytest.raises(UserError, match="part-00000.parquet: .* bytes, the manifest says"):
        train(cfg(sample_copy, tmp_path / "r2", "steps=2"), say=None)
