"""Whole acquisition runs: a SIGKILLed download resumes, the scheduled build waits for
unsettled images, annotation files are fetched with their sha256 checked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import Fault, FaultServer
from test_download import photo_jpeg

from conftest import REPO, build, shard_bytes
from schemas.config import SAMPLE_ANNOTATIONS, load_config
from tasks.acquire.annotation_fetch import FetchError, ensure_files
from tasks.acquire.ledger import read_ledger


def _ok_rows(images: Path) -> set[int]:
    path = images / "_ledger.jsonl"
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("status") == "ok":
            ids.add(row["image_id"])
    return ids


def _partial_bytes(folder: Path) -> int:
    """Bytes in part files right now (they come and go while we look)."""
    total = 0
    for p in folder.glob("*.part") if folder.exists() else []:
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


@pytest.mark.slow
def test_sigkilled_download_resumes_without_refetching(tmp_path):
    n = 30
    with FaultServer() as server:
        records = []
        for i in range(1, n + 1):
            path = f"/VG_100K/{i}.jpg"
            records.append({"image_id": i, "width": 320, "height": 240, "split": "train",
                            "url": server.put(path, photo_jpeg(i, 320, 240))})
            server.faults[path] = Fault(trickle=0.01)  # ~1 KiB per 10 ms: a slow link
        split_file = tmp_path / "image_data_split.json"
        split_file.write_text(json.dumps(records))
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "flows.cli", "download", "--images", str(split_file),
               "--out", str(out), "--set", "images.workers=4"]
        env = {**os.environ, "COLUMNS": "120"}
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        partial = out / "images" / "_partial"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(_ok_rows(out / "images")) >= 5 and _partial_bytes(partial):
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        done_before = _ok_rows(out / "images")
        assert 5 <= len(done_before) < n

        rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        time.sleep(0.5)  # server threads log a request once its last byte is sent
        # By arrival time: the killed run's last responses may be logged after the kill.
        second = [e for e in server.log if e.at > killed_at]

        for i in range(1, n + 1):
            path = f"/VG_100K/{i}.jpg"
            assert (out / "images" / f"{i}.jpg").read_bytes() == server.files[path].body, i
            whole = [e for e in server.requests_for(path) if e.whole_from_zero]
            assert len(whole) <= 1, f"{path} was fetched whole {len(whole)} times"
        # Images complete before the kill were not asked for again ...
        assert not [e for e in second if int(e.path.rsplit("/", 1)[1][:-4]) in done_before]
        # ... and the interrupted ones continued where they stopped.
        assert any(e.status == 206 and e.range for e in second)
        assert set(read_ledger(out / "images")) == set(range(1, n + 1))
        assert all(r["status"] == "ok" for r in read_ledger(out / "images").values())


def _served_sample(tmp_path: Path, server: FaultServer) -> Path:
    """The sample annotations with each image's url on the local server."""
    from tasks.acquire.sample_photos import materialize

    ann = tmp_path / "ann"
    shutil.copytree(SAMPLE_ANNOTATIONS, ann)
    records = json.loads((ann / "image_data_split.json").read_text())
    for photo in materialize(tmp_path / "photos"):
        server.put(f"/VG_100K/{photo.name}", photo.read_bytes())
    for rec in records:
        rec["url"] = server.url(f"/VG_100K/{rec['image_id']}.jpg")
    (ann / "image_data_split.json").write_text(json.dumps(records))
    return ann


async def _artifacts():
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_artifacts()


@pytest.mark.slow
def test_scheduled_build_waits_for_unsettled_images(prefect_server, sample_dataset, tmp_path):
    with FaultServer() as server:
        ann = _served_sample(tmp_path, server)
        server.faults["/VG_100K/9100006.jpg"] = Fault(status=503, retry_after="0")
        # Two download processes: the flow drives worker processes as the nightly config does.
        over = [f"annotations.dir={ann}", "images.source=http", "images.attempts_per_run=1",
                "images.backoff_base=0.01", "images.processes=2"]
        out = tmp_path / "out"

        first = build(out, *over)
        assert first["complete"] is False and first["waiting"] == 1 and first["built"] == 4
        assert not (out / "_manifest.json").exists()
        assert read_ledger(out / "images")[9100006]["status"] == "retry"
        # The flow showed its acquisition as a Prefect progress artifact.
        assert any((a.description or "").startswith("8/8 images: ok 7, retry 1")
                   for a in asyncio.run(_artifacts()))

        server.faults.clear()
        second = build(out, *over)
        assert second["complete"] is True and second["built"] == 1
        # Downloaded images are the sample photos, so the shards equal the sample build's.
        assert shard_bytes(out) == shard_bytes(sample_dataset)

        mark, started = len(server.log), time.monotonic()
        third = build(out, *over)
        assert third["built"] == 0 and third["complete"] is True
        assert len(server.log) == mark  # nothing to fetch
        assert time.monotonic() - started < 30


def test_annotation_files_are_fetched_and_checked(tmp_path):
    names = ["image_data_split.json", "refer_val.json"]
    with FaultServer() as server:
        sources = {}
        for name in names:
            body = (SAMPLE_ANNOTATIONS / name).read_bytes()
            sources[name] = {"url": server.put(f"/ann/{name}", body, content_type="application/json"),
                             "sha256": hashlib.sha256(body).hexdigest()}
        # refer_val.json through the Google Drive path (gdown), on the local server.
        server.put("/uc?id=VALID", (SAMPLE_ANNOTATIONS / "refer_val.json").read_bytes(),
                   content_type="application/json")
        sources["refer_val.json"] = {"gdrive_id": "VALID", "sha256": sources["refer_val.json"]["sha256"]}
        cfg = load_config(None, {"annotations": {"dir": str(tmp_path / "ann"), "sources": sources,
                                                 "gdrive_url": server.url("/uc?id={id}")}})
        hashes = ensure_files(cfg.annotations, names, cfg.images)
        assert hashes == {n: sources[n]["sha256"] for n in names}
        for name in names:
            assert (tmp_path / "ann" / name).read_bytes() == (SAMPLE_ANNOTATIONS / name).read_bytes()
        assert [e.path for e in server.settled_log(2)] == ["/ann/image_data_split.json", "/uc?id=VALID"]
        # Present files are not fetched again.
        ensure_files(cfg.annotations, names, cfg.images)
        assert len(server.log) == 2

        bad = {"refer_test.json": {"url": server.put("/ann/refer_test.json", b"[]"), "sha256": "0" * 64}}
        cfg = load_config(None, {"annotations": {"dir": str(tmp_path / "ann"), "sources": bad}})
        with pytest.raises(FetchError, match="refer_test.json: downloaded bytes have sha256"):
            ensure_files(cfg.annotations, ["refer_test.json"], cfg.images)
        assert not (tmp_path / "ann" / "refer_test.json").exists()
        with pytest.raises(FileNotFoundError, match="refer_miniv.json.*no entry"):
            ensure_files(cfg.annotations, ["refer_miniv.json"], cfg.images)


@pytest.mark.slow
def test_build_from_visual_genome_zips_equals_the_sample(prefect_server, sample_dataset, tmp_path):
    """The images read member by member from VG-style zips give the same shards."""
    import zipfile

    from tasks.acquire.sample_photos import materialize

    photos = materialize(tmp_path / "photos")
    zips = [tmp_path / "images.zip", tmp_path / "images2.zip"]
    for z, (folder, part) in zip(zips, [("VG_100K", photos[:4]), ("VG_100K_2", photos[4:])]):
        with zipfile.ZipFile(z, "w") as zf:
            for photo in part:
                zf.write(photo, f"{folder}/{photo.name}")
    out = tmp_path / "out"
    summary = build(out, "images.source=zip", f"images.zips=[{zips[0]}, {zips[1]}]")
    assert summary["complete"] and summary["built"] == 5
    assert shard_bytes(out) == shard_bytes(sample_dataset)
    assert {r["source"] for r in read_ledger(out / "images").values()} == {"zip"}
