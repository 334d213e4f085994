"""The captions stage with tiny random BLIP and open_clip models built through the real
classes and saved to folders as a user's would be."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REPO, SAMPLE_CONFIG, build, captions_on, shard_bytes

pytestmark = pytest.mark.usefixtures("prefect_server")


def _rows(out):
    return [r for p in sorted((out / "data").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_rows_carry_ranked_captions_and_unit_embeddings(captioned, models):
    import open_clip
    import torch

    from tasks.captions.engine import load_models

    rows = _rows(captioned)
    assert rows and all(r["caption"] for r in rows)
    m = load_models(models["blip"], models["clip"], "cpu", "bfloat16")
    model, preprocess = open_clip.create_model_from_pretrained(models["clip"])   # independently
    tokenizer = open_clip.get_tokenizer(models["clip"])
    from PIL import Image
    for row in rows[::7]:
        cands = row["caption_candidates"]
        assert row["caption"] == cands[0]["text"] and row["caption_clip_score"] == cands[0]["clip_score"]
        assert [c["clip_score"] for c in cands] == sorted((c["clip_score"] for c in cands), reverse=True)
        assert not row["caption"].lower().startswith("a picture of")
        for col in ("clip_image", "clip_phrase", "clip_caption"):
            v = np.asarray(row[col], np.float32)
            assert v.shape == (m.embed_dim,) and abs(np.linalg.norm(v) - 1) < 2e-3
        with torch.no_grad():
            img = Image.open(captioned / "images" / f"{row['image_id']}.jpg").convert("RGB")
            image = model.encode_image(preprocess(img)[None], normalize=True)[0]
            texts = model.encode_text(tokenizer([c["text"] for c in cands] + [row["phrase"]]), normalize=True)
        assert np.allclose(np.asarray(row["clip_image"], np.float32), image.numpy(), atol=2e-3)
        scores = (texts[:-1] @ image).numpy()
        assert np.allclose([c["clip_score"] for c in cands], scores, atol=1e-4)
        assert np.allclose(np.asarray(row["clip_phrase"], np.float32), texts[-1].numpy(), atol=2e-3)
    meta = pq.read_schema(next((captioned / "data").rglob("*.parquet"))).metadata
    assert meta[b"phraseharmony.clip_dim"] == str(m.embed_dim).encode()
    assert meta[b"phraseharmony.clip_model"].decode() == m.clip_source.identity
    card = (captioned / "README.md").read_text()
    assert "## Captions" in card and "beam-search caption won" in card


def test_same_config_gives_identical_shards_and_a_rerun_runs_no_model(captioned, models, tmp_path,
                                                                    monkeypatch):
    again = tmp_path / "again"
    build(again, *captions_on(models))
    assert shard_bytes(again) == shard_bytes(captioned)
    import tasks.captions.engine as engine

    def no_models(*a, **k):
        raise AssertionError("a rerun loaded a model")
    monkeypatch.setattr(engine, "load_models", no_models)
    assert build(again, *captions_on(models))["built"] == 0


def test_a_clip_change_reruns_clip_only_and_equals_a_clean_build(captioned, models, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(captioned, out)
    import tasks.captions.engine as engine

    def no_blip(*a, **k):
        raise AssertionError("BLIP ran for a CLIP change")
    monkeypatch.setattr(engine, "caption_batch", no_blip)
    summary = build(out, *captions_on(models, "clip2"))
    assert summary["built"] == summary["shards"]
    monkeypatch.undo()
    clean = tmp_path / "clean"
    build(clean, *captions_on(models, "clip2"))
    assert shard_bytes(out) == shard_bytes(clean)
    first = pq.read_table(next((captioned / "data").rglob("*.parquet")))["clip_image"].to_pylist()
    second = pq.read_table(next((out / "data").rglob("*.parquet")))["clip_image"].to_pylist()
    assert first != second


def test_a_recaptioned_image_rebuilds_exactly_its_shard(captioned, models, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(captioned, out)
    (out / "captions" / "train" / "part-00001.parquet").write_bytes(b"PAR1 not ours PAR1")
    before = {p.name: p.stat().st_mtime_ns for p in (out / "_done").glob("*.json")}
    summary = build(out, *captions_on(models))
    assert summary["built"] == 0   # the part came back byte-identical: no shard changed
    assert shard_bytes(out) == shard_bytes(captioned)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "_done").glob("*.json")} == before
    summary = build(out, *captions_on(models, "clip", "captions.top_p=0.5"))   # BLIP settings: recaption
    assert summary["built"] == summary["shards"]


def _copy_model(models, key, dest):
    src = Path(models[key].removeprefix("local-dir:"))
    shutil.copytree(src, dest / src.name)
    return dest / src.name


def test_an_edited_clip_config_reranks_and_equals_a_clean_build(captioned, models, tmp_path, monkeypatch):
    """The normalisation lives in open_clip_config.json, not in the weights: editing it
    must re-embed (and re-rank, without BLIP), as a fresh build with the edited folder."""
    clip = _copy_model(models, "clip", tmp_path / "m")
    cfg_file = clip / "open_clip_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}
    cfg_file.write_text(json.dumps(cfg))
    edited = {**models, "edited": f"local-dir:{clip}"}
    out = tmp_path / "out"
    shutil.copytree(captioned, out)
    import tasks.captions.engine as engine

    def no_blip(*a, **k):
        raise AssertionError("BLIP ran for a CLIP config change")
    monkeypatch.setattr(engine, "caption_batch", no_blip)
    summary = build(out, *captions_on(edited, "edited"))
    assert summary["built"] == summary["shards"]
    monkeypatch.undo()
    clean = tmp_path / "clean"
    build(clean, *captions_on(edited, "edited"))
    assert shard_bytes(out) == shard_bytes(clean) != shard_bytes(captioned)


def test_every_file_that_changes_a_model_is_in_its_identity(models, tmp_path):
    from tasks.captions.models import resolve_blip, resolve_clip

    blip = _copy_model(models, "blip", tmp_path / "m")
    clip = _copy_model(models, "clip", tmp_path / "m")
    base = resolve_blip(str(blip)).identity, resolve_clip(f"local-dir:{clip}").identity
    assert base == (resolve_blip(models["blip"]).identity, resolve_clip(models["clip"]).identity)
    (blip / "README.md").write_text("notes")   # documentation: nothing to recompute
    assert resolve_blip(str(blip)).identity == base[0]
    for name in ("preprocessor_config.json", "generation_config.json", "tokenizer_config.json"):
        path = next(blip.glob(name.replace("preprocessor", "*processor")), None) or blip / name
        assert path.is_file(), sorted(p.name for p in blip.iterdir())
        before = resolve_blip(str(blip)).identity
        data = json.loads(path.read_text())
        data["phraseharmony_edit"] = name
        path.write_text(json.dumps(data))
        assert resolve_blip(str(blip)).identity != before, name
    before = resolve_clip(f"local-dir:{clip}").identity
    (clip / "open_clip_config.json").write_text((clip / "open_clip_config.json").read_text() + " ")
    assert resolve_clip(f"local-dir:{clip}").identity != before


def test_damaged_model_folders_are_one_line_before_any_work(models, tmp_path):
    from tasks.captions.models import ModelMissing, resolve_blip, resolve_clip

    blip = _copy_model(models, "blip", tmp_path / "m")
    clip = _copy_model(models, "clip", tmp_path / "m")
    weights = clip / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelMissing, match="open_clip_model.safetensors is truncated or damaged"):
        resolve_clip(f"local-dir:{clip}")
    for name in ("vocab.txt", "tokenizer.json"):
        (blip / name).unlink(missing_ok=True)
    with pytest.raises(ModelMissing, match="no tokenizer in"):
        resolve_blip(str(blip))
    env = dict(os.environ, COLUMNS="300")
    res = subprocess.run([sys.executable, "-m", "flows.cli", "models", "check", "--config",
                          str(SAMPLE_CONFIG), "--set", f"captions.blip_model={blip}",
                          "--set", f"captions.clip_model=local-dir:{clip}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    assert "no tokenizer" in res.stdout and "truncated or damaged" in res.stdout
    res = subprocess.run([sys.executable, "-m", "flows.cli", "build", "--config", str(SAMPLE_CONFIG),
                          "--out", str(tmp_path / "o"), "--set", "captions.enabled=true",
                          "--set", f"captions.blip_model={models['blip']}",
                          "--set", f"captions.clip_model=local-dir:{clip}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "truncated or damaged" in res.stdout, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr and not (tmp_path / "o" / "annotations.arrow").exists()


def test_missing_weights_stop_before_any_work(tmp_path, monkeypatch, capsys):
    from tasks.captions.models import ModelMissing

    t0 = time.monotonic()
    with pytest.raises(ModelMissing, match="BLIP model .*nowhere.*phraseharmony models download"):
        build(tmp_path / "out", "captions.enabled=true", f"captions.blip_model={tmp_path / 'nowhere'}")
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out" / "annotations.arrow").exists()
    # Through the CLI's entry point, in this process (no PREFECT_API_URL here: a build
    # would start a temporary server under PREFECT_HOME and leave its log there).
    from flows.cli.app import main

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    assert "PREFECT_API_URL" not in os.environ and os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setattr(sys, "argv", ["phraseharmony", "build", "--config", str(SAMPLE_CONFIG), "--out",
                                      str(tmp_path / "o2"), "--set", "captions.enabled=true",
                                      "--set", "captions.clip_model=ViT-B-32/laion2b_s34b_b79k"])
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        main()
    said = capsys.readouterr()
    assert exited.value.code == 2, said
    assert "CLIP model ViT-B-32/laion2b_s34b_b79k: weights not in" in said.out
    assert "Traceback" not in said.out + said.err
    # The CLI checks before it starts a Prefect server: the imports' seconds, nothing more.
    assert not (tmp_path / "home" / "temporary-server.log").exists()
    assert time.monotonic() - t0 < 25


def test_auto_without_weights_builds_and_says_so(sample_dataset):
    manifest = json.loads((sample_dataset / "_manifest.json").read_text())
    assert manifest["captions"]["on"] is False and manifest["captions"]["setting"] == "auto"
    card = (sample_dataset / "README.md").read_text()
    assert "were not found where the build ran" in card
    assert all(r["caption"] is None and r["clip_phrase"] is None for r in _rows(sample_dataset))


def test_sigkill_during_captions_then_rerun_equals_clean(models, few_photos, prefect_server, tmp_path):
    """Killed once a caption part is done (of three: train's two photos, val, test), then
    resumed; equal to a clean build. (On the suite's server: what a kill leaves of a
    CLI-owned server is test_interrupts'.)"""
    slow = [*captions_on(models), "captions.candidates=16", "captions.max_length=32",
            "captions.min_length=24", "captions.batch_size=1", "captions.workers=0",
            f"annotations.dir={few_photos}"]
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "home"), PREFECT_API_URL=prefect_server)
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "flows.cli", "build", "--config", str(SAMPLE_CONFIG), "--out", str(out)]
    proc = subprocess.Popen(args + [a for o in slow for a in ("--set", o)], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            done = out / "captions" / "_done"
            if done.exists() and any(done.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the build ended before it could be killed mid-stage"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "_manifest.json").exists()
    build(out, *slow)
    clean = tmp_path / "clean"
    build(clean, *slow)
    assert shard_bytes(out) == shard_bytes(clean)
    for kind in ("captions", "phrase_embeddings"):
        assert sorted(p.read_bytes() for p in (out / kind).rglob("*.parquet")) == \
            sorted(p.read_bytes() for p in (clean / kind).rglob("*.parquet"))


def test_candidates_drop_empty_and_duplicates_and_nonfinite_names_the_model(models):
    from collections import Counter

    import torch

    from tasks.captions.engine import _finite, load_models, strip_prompt
    from tasks.captions.stage import _candidates

    skips = Counter()
    assert _candidates(["a dog", "", "a dog", "red car"], "", skips) == ["a dog", "red car"]
    assert skips == {"empty_candidate": 2}
    assert strip_prompt("A picture of a red car", "a picture of ") == "a red car"
    assert strip_prompt("a picture of", "a picture of ") == ""
    m = load_models(models["blip"], models["clip"], "cpu", "bfloat16")
    with pytest.raises(FloatingPointError, match="CLIP model local-dir:.*non-finite"):
        _finite(m, torch.tensor([[float("nan"), 1.0]]))


@pytest.mark.slow
def test_dask_sends_captions_to_the_gpu_worker_only(models, tmp_path):
    """A cluster with one worker declaring GPU=1 and one without: every caption task runs
    on the first (the resource annotation), shards anywhere. The GPU worker runs in this
    process (its torch is imported already), the other as a process of its own; the
    flow's tasks reach both pickled, over TCP."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, processes=False, protocol="tcp", threads_per_worker=1,
                           dashboard_address=None, resources={"GPU": 1})
    cpu = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                            "--nthreads", "1", "--name", "cpu-only", "--no-dashboard"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        summary = build(tmp_path / "out", *captions_on(models), "captions.workers=0", "runner.kind=dask",
                        f"runner.dask_address={cluster.scheduler_address}")
        assert summary["complete"]
        ran = client.run(lambda dask_worker: sorted({str(e[0]) for e in dask_worker.state.log}))
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        captions = {names[a]: sum(k.startswith("caption_part") for k in keys) for a, keys in ran.items()}
        assert captions == {0: 5, "cpu-only": 0}, captions
    finally:
        cpu.terminate()
        cpu.wait()
        client.close()
        cluster.close()


def test_cuda_out_of_memory_halves_the_batch_and_goes_on(models, tmp_path, monkeypatch, caplog):
    import torch

    from schemas.config import load_config
    from tasks.acquire.sample_photos import SAMPLE_PHOTOS, materialize
    from tasks.captions import engine
    from tasks.captions.stage import caption_images

    materialize(tmp_path / "out" / "images")
    cfg = load_config(None, captions_on(models, "clip", "captions.workers=0", "captions.batch_size=8"),
                      tmp_path / "out")
    m = engine.load_models(cfg.captions.blip_model, cfg.captions.clip_model, "cpu", "bfloat16")
    ids = sorted(SAMPLE_PHOTOS)
    normal, _ = caption_images(cfg, m, ids, None)
    real = engine.caption_batch

    def small_only(models_, pixels, image_ids, *args):
        if len(image_ids) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(models_, pixels, image_ids, *args)
    monkeypatch.setattr(engine, "caption_batch", small_only)
    halved, _ = caption_images(cfg, m, ids, None)
    # The same photos and captions (float sums over other batch sizes differ in the last bits).
    for col in ("image_id", "caption", "candidates_generated", "beam_caption"):
        assert halved[col].to_pylist() == normal[col].to_pylist()
    assert np.allclose(np.asarray(halved["clip_image"].to_pylist(), np.float32),
                       np.asarray(normal["clip_image"].to_pylist(), np.float32), atol=2e-3)
    assert any("out of memory on a batch of 8 images" in r.getMessage() for r in caplog.records)


def test_models_cli_and_the_stage_alone(models, sample_copy, tmp_path, monkeypatch):
    """In this process (the CLI as a process: test_cli), on a wide console: rich would
    wrap the lines looked for."""
    from rich.console import Console
    from typer.testing import CliRunner

    import flows.cli.captions as cli_captions
    from flows.cli import app

    monkeypatch.setattr(cli_captions, "console", Console(width=300))
    run = CliRunner().invoke
    sets = [a for o in captions_on(models)[1:3] for a in ("--set", o)]
    check = run(app, ["models", "check", "--config", str(SAMPLE_CONFIG), *sets])
    assert check.exit_code == 0, check.output
    assert check.output.count("present") == 2 and "32-d embeddings" in check.output
    missing = run(app, ["models", "check", "--config", str(SAMPLE_CONFIG),
                        "--set", f"captions.blip_model={tmp_path / 'none'}"])
    assert missing.exit_code == 1 and "missing BLIP model" in missing.output
    fetch = run(app, ["models", "download", "--config", str(SAMPLE_CONFIG), *sets])
    assert fetch.exit_code == 0 and fetch.output.count("nothing to fetch") == 2, fetch.output
    stage = run(app, ["captions", "--config", str(SAMPLE_CONFIG), "--out", str(sample_copy), *sets])
    assert stage.exit_code == 0, stage.output
    assert "5 of 5 parts to compute" in stage.output and "done" in stage.output
    import tasks.captions.engine as engine

    def no_models(*a, **k):
        raise AssertionError("the build recomputed captions the stage had made")
    monkeypatch.setattr(engine, "load_models", no_models)
    summary = build(sample_copy, *captions_on(models))
    assert summary["built"] == summary["shards"] and all(r["caption"] for r in _rows(sample_copy))


def test_a_photo_that_fails_to_decode_is_a_counted_skip(models, tmp_path):
    from schemas.config import load_config
    from tasks.acquire.sample_photos import SAMPLE_PHOTOS, materialize
    from tasks.captions import engine
    from tasks.captions.stage import caption_images

    images = tmp_path / "out" / "images"
    materialize(images)
    (images / "9100003.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    # (Decoded in the two prefetch workers of captions_on: the pool this process's other
    # captioned builds started; another size would start, and import torch in, new ones.)
    cfg = load_config(None, captions_on(models, "clip", "captions.batch_size=3"), tmp_path / "out")
    m = engine.load_models(cfg.captions.blip_model, cfg.captions.clip_model, "cpu", "bfloat16")
    table, skips = caption_images(cfg, m, sorted(SAMPLE_PHOTOS), None)
    assert skips["image_unreadable"] == 1
    assert table["image_id"].to_pylist() == [i for i in sorted(SAMPLE_PHOTOS) if i != 9100003]


def test_prefetch_in_chunks_equals_in_process(tmp_path, monkeypatch):
    from torchvision.transforms import CenterCrop, Compose, Resize

    import tasks.core.torch_compat  # noqa: F401
    from tasks.acquire.sample_photos import SAMPLE_PHOTOS, materialize
    from tasks.captions import prefetch

    materialize(tmp_path)
    (tmp_path / "9100003.jpg").write_bytes(b"not a photo")
    monkeypatch.setattr(prefetch, "CHUNK", 5)   # batches of 20 from chunks of 5 over 2 workers
    ids, steps = sorted(SAMPLE_PHOTOS) * 6, Compose([Resize(48), CenterCrop(48)])
    here = list(prefetch.batches(tmp_path, ids, 20, 0, (32, 32), 3, steps))
    pooled = list(prefetch.batches(tmp_path, ids, 20, 2, (32, 32), 3, steps))
    assert [len(b[0]) + len(b[3]) for b in pooled] == [20, 20, 8]
    for a, b in zip(here, pooled, strict=True):
        assert a[0] == b[0] and a[3] == b[3] and (a[1] == b[1]).all() and (a[2] == b[2]).all()
