"""Image acquisition over HTTP against a real server on 127.0.0.1 that misbehaves."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fault_server import Fault, FaultServer
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from schemas.config import load_config
from tasks.acquire.downloader import acquire_records
from tasks.acquire.ledger import read_ledger

# Fast retries for tests; the timing tests below set their own.
FAST = ["images.backoff_base=0.02", "images.backoff_max=0.05", "images.http.read_timeout=5"]


def photo_jpeg(i: int, w: int = 160, h: int = 120) -> bytes:
    """A crop of a real packaged photo (different per i), as JPEG bytes."""
    from skimage import data

    photo = (data.astronaut, data.coffee, data.chelsea, data.rocket)[i % 4]()
    y, x = (i * 37) % (photo.shape[0] - h), (i * 53) % (photo.shape[1] - w)
    buf = io.BytesIO()
    Image.fromarray(photo[y:y + h, x:x + w]).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


def serve(server: FaultServer, ids, **kw) -> list[dict]:
    recs = []
    for i in ids:
        url = server.put(f"/VG_100K/{i}.jpg", photo_jpeg(i), **kw)
        recs.append({"image_id": i, "width": 160, "height": 120, "url": url, "split": "train"})
    return recs


def fetch(out: Path, records, *overrides: str):
    cfg = load_config(None, ["images.source=http", *FAST, *overrides], out)
    return acquire_records(cfg, records), read_ledger(cfg.images_dir)


def assert_same_bytes(out: Path, server: FaultServer, ids) -> None:
    for i in ids:
        assert (out / "images" / f"{i}.jpg").read_bytes() == server.files[f"/VG_100K/{i}.jpg"].body


def test_downloads_are_byte_identical_over_kept_alive_connections(server, tmp_path):
    recs = serve(server, range(1, 21))
    counts, ledger = fetch(tmp_path, recs, "images.workers=2")
    assert counts == {"ok": 20}
    assert_same_bytes(tmp_path, server, range(1, 21))
    row = ledger[5]
    assert row["status"] == "ok" and row["attempts"] == 1 and row["size_mismatch"] is False
    assert row["bytes"] == len(server.files["/VG_100K/5.jpg"].body) and len(row["sha256"]) == 64
    assert {"time", "source", "url", "http_status"} <= set(row)
    # 20 requests over at most a few TCP connections: keep-alive works.
    assert len({e.client_port for e in server.settled_log(20)}) <= 4
    # A second run fetches nothing.
    counts, _ = fetch(tmp_path, recs, "images.workers=2")
    assert counts == {"already_ok": 20} and len(server.settled_log(20)) == 20
    assert not list((tmp_path / "images" / "_partial").iterdir())


@pytest.mark.parametrize("status", [404, 410, 403])
def test_permanent_statuses_are_not_retried(server, tmp_path, status):
    recs = serve(server, [1])
    server.faults["/VG_100K/1.jpg"] = Fault(status=status)
    counts, ledger = fetch(tmp_path, recs)
    assert counts == {"failed": 1} and ledger[1]["error"] == f"HTTP {status}"
    assert len(server.settled_log(1)) == 1 and not (tmp_path / "images" / "1.jpg").exists()
    # Settled: the next run does not ask again, unless told to.
    assert fetch(tmp_path, recs)[0] == {"already_failed": 1} and len(server.settled_log(1)) == 1
    server.faults.clear()
    counts, ledger = fetch(tmp_path, recs, "images.retry_failed=true")
    assert counts == {"ok": 1} and len(server.settled_log(2)) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(server, tmp_path, status):
    recs = serve(server, [1])
    server.faults["/VG_100K/1.jpg"] = Fault(status=status, retry_after="1", times=1)
    counts, ledger = fetch(tmp_path, recs)
    assert counts == {"ok": 1} and ledger[1]["attempts"] == 2
    first, second = server.settled_log(2)
    assert first.status == status and second.status == 200
    assert second.at - first.at >= 0.95  # waited as asked, not the 20 ms backoff


def test_server_errors_back_off_exponentially_then_succeed(server, tmp_path):
    recs = serve(server, [1])
    server.faults["/VG_100K/1.jpg"] = Fault(status=500, times=2)
    counts, ledger = fetch(tmp_path, recs)
    assert counts == {"ok": 1} and ledger[1]["attempts"] == 3 and len(server.settled_log(3)) == 3


def test_backoff_is_exponential_with_full_jitter(tmp_path):
    from tasks.acquire.downloader import Acquirer
    from tasks.acquire.image_sources import DirSource

    cfg = load_config(None, ["images.backoff_base=1", "images.backoff_max=30"], tmp_path)
    acq = Acquirer(DirSource(tmp_path), cfg.images_dir, cfg.images)
    for attempts, cap in [(1, 1), (2, 2), (3, 4), (5, 16), (9, 30)]:
        waits = np.array([acq.backoff(attempts) for _ in range(4000)])
        assert waits.min() >= 0 and waits.max() <= cap
        assert abs(waits.mean() - cap / 2) < 0.05 * cap  # uniform on [0, cap]


def test_transient_failures_wait_for_the_next_run_then_give_up(server, tmp_path):
    recs = serve(server, [1])
    server.faults["/VG_100K/1.jpg"] = Fault(status=500)
    over = ["images.attempts_per_run=2", "images.give_up_after=5"]
    counts, ledger = fetch(tmp_path, recs, *over)
    assert counts == {"retry": 1} and ledger[1]["attempts"] == 2 and ledger[1]["error"] == "HTTP 500"
    counts, ledger = fetch(tmp_path, recs, *over)
    assert counts == {"retry": 1} and ledger[1]["attempts"] == 4
    counts, ledger = fetch(tmp_path, recs, *over)
    assert counts == {"failed": 1} and ledger[1]["attempts"] == 5 and "gave up" in ledger[1]["error"]
    assert len(server.settled_log(5)) == 5


@pytest.mark.parametrize("fault", [Fault(reset_after=3000, times=1), Fault(truncate_after=3000, times=1)],
                         ids=["reset", "truncated"])
def test_broken_bodies_resume_with_range(server, tmp_path, fault):
    recs = serve(server, [1])
    server.faults["/VG_100K/1.jpg"] = fault
    counts, ledger = fetch(tmp_path, recs)
    assert counts == {"ok": 1}
    assert_same_bytes(tmp_path, server, [1])
    first, second = server.settled_log(2)
    assert first.sent == 3000 and second.range == "bytes=3000-" and second.status == 206
    assert ledger[1]["resumed_from"] == 3000


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    recs = serve(server, [1])
    server.faults["/VG_100K/1.jpg"] = Fault(reset_after=3000, times=1)
    cfg = load_config(None, ["images.source=http", *FAST, "images.attempts_per_run=1"], tmp_path)
    assert acquire_records(cfg, recs) == {"retry": 1}
    server.faults["/VG_100K/1.jpg"] = Fault(ignore_range=True)
    assert acquire_records(cfg, recs) == {"ok": 1}
    second = server.settled_log(2)[1]
    assert second.range == "bytes=3000-" and second.status == 200
    assert_same_bytes(tmp_path, server, [1])  # the 200 body replaced, not appended


@pytest.mark.parametrize("honours_if_range", [True, False])
def test_file_changed_between_attempts_is_fetched_whole(server, tmp_path, honours_if_range):
    recs = serve(server, [1])
    server.faults["/VG_100K/1.jpg"] = Fault(reset_after=3000, times=1)
    cfg = load_config(None, ["images.source=http", *FAST, "images.attempts_per_run=1"], tmp_path)
    assert acquire_records(cfg, recs) == {"retry": 1}
    server.put("/VG_100K/1.jpg", photo_jpeg(99))  # new content, new ETag
    if not honours_if_range:  # a server that answers 206 with the new file's bytes
        server.faults["/VG_100K/1.jpg"] = Fault(ignore_if_range=True)
        assert acquire_records(cfg, recs) == {"retry": 1}  # detected by the ETag, discarded
    assert acquire_records(cfg, recs) == {"ok": 1}
    assert (tmp_path / "images" / "1.jpg").read_bytes() == photo_jpeg(99)


def test_html_page_instead_of_jpeg_is_refused(server, tmp_path):
    recs = serve(server, [1, 2])
    server.faults["/VG_100K/1.jpg"] = Fault(html=True)
    # And a page served as image/jpeg: it fails verification instead.
    server.put("/VG_100K/2.jpg", b"<html>not found</html>" * 50)
    counts, ledger = fetch(tmp_path, recs)
    assert counts == {"failed": 1, "corrupt": 1}
    assert "text/html" in ledger[1]["error"] and ledger[2]["status"] == "corrupt"
    assert not list((tmp_path / "images").glob("*.jpg"))


def test_slow_server_times_out(server, tmp_path):
    recs = serve(server, [1, 2])
    server.faults["/VG_100K/1.jpg"] = Fault(delay=2.0)
    server.faults["/VG_100K/2.jpg"] = Fault(trickle=1.5)  # stalls between 1 KiB chunks
    counts, ledger = fetch(tmp_path, recs, "images.http.read_timeout=0.3", "images.attempts_per_run=1")
    assert counts == {"retry": 2}
    assert "Timeout" in ledger[1]["error"] and "Timeout" in ledger[2]["error"]


def test_redirects_followed_loops_and_bad_schemes_refused(server, tmp_path):
    recs = serve(server, [1, 2, 3])
    server.faults["/VG_100K/1.jpg"] = Fault(redirect_to="/VG_100K/1.jpg")
    server.faults["/VG_100K/2.jpg"] = Fault(redirect_to="ftp://127.0.0.1/2.jpg")
    server.faults["/VG_100K/3.jpg"] = Fault(redirect_to="/elsewhere/3.jpg")
    server.put("/elsewhere/3.jpg", photo_jpeg(3))
    counts, ledger = fetch(tmp_path, recs)
    assert counts == {"failed": 2, "ok": 1}
    assert "redirects" in ledger[1]["error"] and "'ftp' not allowed" in ledger[2]["error"]
    assert len(server.requests_for("/VG_100K/1.jpg")) == 6  # 1 + max_redirects, no retry


def test_decompression_bomb_and_oversized_body_are_refused(server, tmp_path):
    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, "PNG")  # 48 Mpx in a few dozen kB
    assert len(buf.getvalue()) < 200_000
    recs = serve(server, [1, 2])
    server.put("/VG_100K/1.jpg", buf.getvalue(), content_type="image/png")
    # The header is read, the pixels never decoded: over images.max_pixels (40 M).
    counts, ledger = fetch(tmp_path / "a", recs[:1])
    assert counts == {"too_large": 1} and "8000x6000 exceeds" in ledger[1]["error"]
    # A byte cap stops the body itself (checked on Content-Length, and while streaming).
    counts, ledger = fetch(tmp_path / "b", recs[1:], "images.http.max_bytes=4096")
    assert counts == {"failed": 1} and "too large" in ledger[2]["error"]
    assert not list((tmp_path / "a" / "images").glob("*.jpg"))


def test_annotated_size_mismatch_is_recorded(server, tmp_path):
    recs = serve(server, [1])
    recs[0]["width"] = 161
    counts, ledger = fetch(tmp_path, recs)
    assert counts == {"ok": 1}
    assert ledger[1]["size_mismatch"] is True and ledger[1]["actual_width"] == 160


def test_zip_source_reads_members(tmp_path):
    zpath = tmp_path / "images.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("VG_100K/1.jpg", photo_jpeg(1))
        zf.writestr("VG_100K/2.jpg", b"\xff\xd8 truncated")
    z2 = tmp_path / "images2.zip"
    with zipfile.ZipFile(z2, "w") as zf:
        zf.writestr("VG_100K_2/3.jpg", photo_jpeg(3))
    recs = [{"image_id": i, "width": 160, "height": 120} for i in (1, 2, 3, 4)]
    cfg = load_config(None, ["images.source=zip", f"images.zips=[{zpath}, {z2}]"], tmp_path / "out")
    assert acquire_records(cfg, recs) == {"ok": 2, "corrupt": 1, "missing": 1}
    assert (tmp_path / "out" / "images" / "3.jpg").read_bytes() == photo_jpeg(3)
    assert "no member 4.jpg" in read_ledger(cfg.images_dir)[4]["error"]


def test_cli_download_counts_bad_records_in_the_ledger(server, tmp_path):
    good = serve(server, [1, 2])
    bad = [
        {"image_id": 3, "width": 160, "height": 120, "split": "train"},                   # no url
        {"image_id": "x4", "width": 160, "height": 120, "url": good[0]["url"], "split": "train"},
        {"image_id": 5, "width": -160, "height": 120, "url": good[0]["url"], "split": "train"},
        dict(good[0]),                                                                     # duplicate
        {"image_id": 6, "width": 160, "height": 120, "url": "file:///etc/passwd", "split": "train"},
    ]
    split_file = tmp_path / "image_data_split.json"
    split_file.write_text(json.dumps(good + bad))
    runner = CliRunner()
    args = ["download", "--images", str(split_file), "--out", str(tmp_path / "o")]
    args += [arg for o in FAST for arg in ("--set", o)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = " ".join(res.output.split())  # rich wraps lines
    assert "invalid 2, invalid_record 3, ok 2" in summary
    rows = [json.loads(x) for x in (tmp_path / "o" / "images" / "_ledger.jsonl").read_text().splitlines()]
    by_record = {r["record"]: r["error"] for r in rows if "record" in r}
    assert by_record == {"image_data_split.json[3]": "image_bad_id",
                         "image_data_split.json[4]": "image_bad_size",
                         "image_data_split.json[5]": "image_duplicate_id"}
    ledger = read_ledger(tmp_path / "o" / "images")
    assert ledger[3]["error"] == "no url" and "'file' not allowed" in ledger[6]["error"]
    assert not (tmp_path / "o" / "images" / "6.jpg").exists()
    # A rerun adds no duplicate skip rows and fetches nothing.
    before = len(server.log)
    assert runner.invoke(app, args).exit_code == 0
    again = (tmp_path / "o" / "images" / "_ledger.jsonl").read_text().splitlines()
    assert len(again) == len(rows) and len(server.log) == before


def test_worker_processes_give_the_same_files(server, tmp_path):
    recs = serve(server, range(1, 13))
    server.faults["/VG_100K/3.jpg"] = Fault(status=404)
    server.faults["/VG_100K/4.jpg"] = Fault(reset_after=2000, times=1)
    counts, ledger = fetch(tmp_path, recs, "images.processes=2", "images.workers=4")
    assert counts == {"ok": 11, "failed": 1}
    assert_same_bytes(tmp_path, server, [i for i in range(1, 13) if i != 3])
    assert ledger[4]["resumed_from"] == 2000 and ledger[3]["error"] == "HTTP 404"


def test_download_refuses_a_folder_another_run_is_writing(server, tmp_path):
    from tasks.core.files import exclusive

    split_file = tmp_path / "image_data_split.json"
    split_file.write_text(json.dumps(serve(server, [1])))
    with exclusive(tmp_path / "o"):
        res = CliRunner().invoke(app, ["download", "--images", str(split_file), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "another build or download is running" in str(res.exception)
    assert not server.log


def test_error_pages_keep_the_connection_alive(server, tmp_path):
    recs = serve(server, range(1, 9))
    for i in range(1, 9, 2):
        server.faults[f"/VG_100K/{i}.jpg"] = Fault(status=404)
    counts, _ = fetch(tmp_path, recs, "images.workers=1")
    assert counts == {"ok": 4, "failed": 4}
    assert len({e.client_port for e in server.log}) == 1  # 8 requests, one connection


def test_cli_download_fetches_the_split_file_named_by_the_config(server, tmp_path):
    recs = serve(server, [1, 2])
    body = json.dumps(recs).encode()
    url = server.put("/ann/image_data_split.json", body, content_type="application/json")
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "annotations": {"dir": str(tmp_path / "ann"), "sources": {
            "image_data_split.json": {"url": url, "sha256": hashlib.sha256(body).hexdigest()}}},
        "images": {"source": "http"}}))
    res = CliRunner().invoke(app, ["download", "--config", str(config), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ann" / "image_data_split.json").read_bytes() == body
    assert_same_bytes(tmp_path / "o", server, [1, 2])
    res = CliRunner().invoke(app, ["download", "--out", str(tmp_path / "o2")])
    assert res.exit_code != 0 and "give --images" in res.output


def test_large_bodies_are_verified_from_disk_not_memory(server, tmp_path, monkeypatch):
    from tasks.acquire import http_fetch

    monkeypatch.setattr(http_fetch, "KEEP_BODY", 1000)
    url = server.put("/big.jpg", photo_jpeg(5))
    outcome = http_fetch.HttpFetcher().fetch(url, tmp_path / "big.part")
    assert outcome.kind == "ok" and outcome.body is None
    assert (tmp_path / "big.part").read_bytes() == photo_jpeg(5)
    counts, ledger = fetch(tmp_path / "o", serve(server, [7]))
    assert counts == {"ok": 1} and ledger[7]["sha256"] == hashlib.sha256(photo_jpeg(7)).hexdigest()
