"""Harmonize by phrase: frozen CLIPSeg + refinement head + HT+ (``model.kind=clipseg_ht``),
with a tiny random CLIPSeg built through the real transformers classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_runs import TINY, losses

from conftest import REPO
from schemas.train_config import TrainData, load_train_config
from tasks.acquire.sample_photos import load_photo
from train.evaluate import evaluate, load_model
from train.loader import Loader
from train.loop import train
from train.region import FrozenClipSeg, mirror_phrase, region_loss
from train.sources import DataError, IHarmony4Source, open_source


def cs_cfg(data: Path, out: Path, clipseg: Path, *extra: str):
    return load_train_config(None, [f"data.dir={data}", f"out_dir={out}", *TINY, "model.kind=clipseg_ht",
                                    f"model.clipseg={clipseg}", *extra])


def test_preprocessing_on_the_device_matches_the_processor(clipseg):
    from transformers import CLIPSegProcessor

    photo = load_photo("coffee")[:256, :256, :3].copy()
    frozen = FrozenClipSeg(str(clipseg))
    ours = frozen.preprocess(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255)
    theirs = CLIPSegProcessor.from_pretrained(clipseg, local_files_only=True)(
        images=[photo], text=["a cup"], return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape == (1, 3, 352, 352)
    # The processor resizes 8-bit pixels in fixed point and rounds; we keep floats. In levels
    # of the 8-bit photo: at most one apart, a third of one on average (its PIL backend is
    # up to two levels from its torchvision one).
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    levels = ((ours - theirs) * std * 255).abs()
    assert levels.max() <= 1.001 and levels.mean() < 0.35


def test_clipseg_ht_trains_with_clipseg_frozen_and_resumes_exactly(sample_dataset, clipseg, tmp_path):
    settings = ["steps=24", "checkpoint_every=8", "val_every=12", "optim.lr=3e-3"]
    straight = tmp_path / "straight"
    summary = train(cs_cfg(sample_dataset, straight, clipseg, *settings), say=None)
    rows = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "train"]
    for key in ("image_loss", "region_loss"):   # both fall
        first, last = (np.mean([r[key] for r in part]) for part in (steps[:6], steps[-6:]))
        assert last < first, (key, first, last)
    model, _, meta = load_model(Path(summary["checkpoint"]), torch.device("cpu"))
    # Not in the checkpoint, not trained: the weights in memory at the end were CLIPSeg's own.
    assert meta["clipseg_weights"] == FrozenClipSeg(str(clipseg)).weights_digest()
    assert not any(k.startswith("clipseg") for k in model.state_dict())
    assert 0.0 < float(meta["region_threshold"]) < 1.0
    assert sum(p.numel() for p in model.head.parameters()) < 1_000_000

    def stop_after_step_19(message: str) -> None:
        if message.startswith("step 19/"):
            raise KeyboardInterrupt

    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(cs_cfg(sample_dataset, broken, clipseg, *settings), say=stop_after_step_19)
    train(cs_cfg(sample_dataset, broken, clipseg, *settings), resume=True, say=None)
    assert losses(broken) == losses(straight)


@pytest.mark.parametrize("region", ["gt", "clipseg"])
def test_one_key_switches_the_region_hts_input(sample_dataset, clipseg, tmp_path, region):
    summary = train(cs_cfg(sample_dataset, tmp_path / region, clipseg, "steps=2", "val_every=2",
                           f"model.region={region}"), say=None)
    model = load_model(Path(summary["checkpoint"]), torch.device("cpu"))[0]
    assert (model.head is None) == (region == "clipseg")


def test_the_phrase_embedding_can_condition_it_too(captioned, clipseg, tmp_path):
    summary = train(cs_cfg(captioned, tmp_path / "t", clipseg, "steps=2", "val_every=2", "model.text=phrase"),
                    say=None)
    model, _, meta = load_model(Path(summary["checkpoint"]), torch.device("cpu"))
    assert model.text_keys == ("clip_phrase",) and type(model.ht).__name__ == "TextHTPlus"
    assert int(meta["text_dim"]) == model.text_dim == 32


def test_evaluation_reports_regions_and_keeps_text_only_rows_off_train(sample_dataset, clipseg, tmp_path):
    summary = train(cs_cfg(sample_dataset, tmp_path / "run", clipseg, "steps=4", "val_every=4"), say=None)
    result = evaluate(Path(summary["checkpoint"]), sample_dataset, "test", workers=0)
    report = json.loads(Path(result["metrics_json"]).read_text())
    assert set(report["rows"]) == {"input composites", "annotated mask", "CLIPSeg region", "refined region",
                                   "empty phrase", "another row's phrase"}
    assert set(report["regions"]) == set(report["rows"]) - {"input composites", "annotated mask"}
    n = json.loads((sample_dataset / "_manifest.json").read_text())["splits"]["test"]["rows"]
    assert all(r["overall"]["n"] == n for r in report["rows"].values())
    assert 0 <= report["regions"]["refined region"]["overall"]["iou"] <= 1
    table = Path(result["metrics_md"]).read_text()
    assert "| refined region | " in table and "Region IoU against the annotated mask at threshold" in table
    on_train = evaluate(Path(summary["checkpoint"]), sample_dataset, "train", workers=0)
    report = json.loads(Path(on_train["metrics_json"]).read_text())
    assert set(report["rows"]) == {"input composites", "annotated mask"} and not report["regions"]
    assert "Text-only rows not computed on 'train'" in Path(on_train["metrics_md"]).read_text()


def test_what_the_phrase_model_cannot_use_is_refused(sample_dataset, clipseg, tmp_path):
    with pytest.raises(DataError, match="iharmony4 rows carry no referring phrase"):
        Loader(IHarmony4Source(tmp_path), "train", TrainData(), 4, 0, train=True, phrases=str(clipseg))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    res = subprocess.run([sys.executable, "-m", "flows.cli", "train", "--config",
                          str(REPO / "configs" / "train-sample.yaml"), "--set", f"data.dir={sample_dataset}",
                          "--set", f"out_dir={tmp_path / 'r'}", "--set", "model.kind=clipseg_ht",
                          "--set", f"model.clipseg={tmp_path / 'no-clipseg'}"],
                         cwd=REPO, env={**env, "PREFECT_HOME": str(tmp_path / "home")}, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "CLIPSeg model" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "home" / "temporary-server.log").exists()
    # `models check|download` read a training config's CLIPSeg.
    from typer.testing import CliRunner

    from flows.cli import app

    config = str(REPO / "configs" / "train-clipseg-ht.yaml")
    res = CliRunner().invoke(app, ["models", "check", "-c", config, "--set", f"model.clipseg={clipseg}"])
    assert res.exit_code == 0 and "present CLIPSeg" in res.output and "parameters (frozen)" in res.output
    res = CliRunner().invoke(app, ["models", "check", "-c", config, "--set", f"model.clipseg={tmp_path}"])
    assert res.exit_code == 1 and "missing CLIPSeg model" in res.output
    res = CliRunner().invoke(app, ["models", "download", "-c", config, "--set", f"model.clipseg={clipseg}"])
    assert res.exit_code == 0 and "a local folder, nothing" in " ".join(res.output.split())  # (rich wraps)


def test_flipped_photos_get_mirrored_phrases():
    assert mirror_phrase("the man on the left") == "the man on the right"
    assert mirror_phrase("Leftmost car, right wheel, bright") == "Rightmost car, left wheel, bright"


def test_region_loss_prefers_the_annotated_region():
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:9, 4:9] = 1
    assert region_loss(mask * 20 - 10, mask) < 0.01 < region_loss(-(mask * 20 - 10), mask)


def test_loader_gives_tokens_of_the_rows_phrases(sample_dataset, clipseg):
    data = TrainData(size=32, workers=0)
    batch = next(Loader(open_source(sample_dataset), "train", data, 4, 0, train=False,
                        phrases=str(clipseg)).epoch(0))
    from train.region import tokenizer

    tok = tokenizer(str(clipseg))
    assert batch["phrase_ids"].shape == batch["phrase_attention"].shape and len(batch["phrase"]) == 4
    for text, ids, att in zip(batch["phrase"], batch["phrase_ids"], batch["phrase_attention"]):
        assert ids[att.bool()].tolist() == tok(text)["input_ids"]
