"""Image download throughput: our acquisition vs img2dataset, same server, same run.

    make bench-download            # 3,000 images, 20 ms latency (needs .venv-bench)
    .venv-bench/bin/python bench/download.py --images 3000 --latency 0.02 --memory-records 77262

A real HTTP server (bench/static_server.py, asyncio, keep-alive) runs in its own process
on 127.0.0.1 and adds ``--latency`` seconds to every request, like a far-away host. Each tool runs in a
fresh subprocess that imports itself first and then times only the download, so import
cost is not counted; peak RSS is the subprocess's (img2dataset: its largest process).

Settings, chosen to be fair: both use 32 concurrent connections in 2 processes x 16
threads (ours is also run as 1 process x 32 threads, its default); our
per-host rate limit is lifted (all images come from one host here, img2dataset has no
such limit); img2dataset keeps original bytes (resize_mode=no). img2dataset is run twice:
with its default decode/re-encode (it then validates like we do) and with
``disable_all_reencoding`` (it writes the bytes unchecked).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def make_photos(n: int, w: int, h: int) -> list[bytes]:
    """n distinct JPEGs cut from packaged real photos (VG photos are ~500x375)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0]]
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = (i * 7) % (p.shape[0] - h + 1), (i * 13) % (p.shape[1] - w + 1)
        buf = io.BytesIO()
        tile = np.ascontiguousarray(p[y:y + h, x:x + w, :3])
        Image.fromarray(tile).save(buf, "JPEG", quality=85 + i % 10)
        out.append(buf.getvalue())
    return out


def serve(ready, port_out, n, w, h, latency) -> None:
    from static_server import run as run_server

    files = {f"/VG_100K/{i}.jpg": body for i, body in enumerate(make_photos(n, w, h), 1)}
    run_server(files, latency, port_out, ready)


OURS = r"""
import json, resource, sys, time
from schemas.config import load_config
from tasks.acquire.downloader import acquire_records
records = json.load(open(sys.argv[1]))
cfg = load_config(None, ["images.source=http", "images.workers=32", f"images.processes={sys.argv[3]}",
                         "images.http.per_host_rate=1000000"], sys.argv[2])
t = time.perf_counter()
counts = acquire_records(cfg, iter(records))
dt = time.perf_counter() - t
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"seconds": dt, "counts": dict(counts), "peak_rss_mib": peak / 1024}))
"""

PEER = r"""
import json, resource, sys, time
from img2dataset import download
t = time.perf_counter()
download(url_list=sys.argv[1], input_format="txt", output_folder=sys.argv[2], output_format="files",
         processes_count=2, thread_count=16, resize_mode="no", timeout=10, retries=0,
         number_sample_per_shard=1000, enable_wandb=False, distributor="multiprocessing",
         disable_all_reencoding=sys.argv[3] == "raw")
dt = time.perf_counter() - t
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"seconds": dt, "peak_rss_mib": peak / 1024}))
"""


def run(code: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir(),
                              "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                              "WANDB_MODE": "disabled"})
    if res.returncode:
        raise SystemExit(f"benchmark subprocess failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def count_files(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.jpg"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--size", default="400x300", help="WxH of the served JPEGs")
    ap.add_argument("--memory-records", type=int, default=0,
                    help="also run ours alone on this many tiny images (77262 = all VGPhraseCut)")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    ctx = mp.get_context("spawn")
    ready, port = ctx.Event(), ctx.Value("i", 0)
    server = ctx.Process(target=serve, args=(ready, port, args.images, w, h, args.latency), daemon=True)
    server.start()
    ready.wait(300)
    base = f"http://127.0.0.1:{port.value}/VG_100K"
    records = [{"image_id": i, "width": w, "height": h, "url": f"{base}/{i}.jpg", "split": "train"}
               for i in range(1, args.images + 1)]
    (work / "records.json").write_text(json.dumps(records))
    (work / "urls.txt").write_text("\n".join(r["url"] for r in records) + "\n")
    try:
        results = {}
        for name, code, extra in [("img2dataset (decode+re-encode)", PEER, ["check"]),
                                  ("phraseharmony (2 processes)", OURS, ["2"]),
                                  ("phraseharmony (1 process)", OURS, ["1"]),
                                  ("img2dataset (raw bytes)", PEER, ["raw"])]:
            out = work / f"{name.split()[0]}-{extra[0]}"
            if name.startswith("phraseharmony"):
                r = run(code, str(work / "records.json"), str(out), *extra)
                files = count_files(out / "images")
            else:
                r = run(code, str(work / "urls.txt"), str(out), *extra)
                files = count_files(out)
            r["files"] = files
            r["images_per_s"] = files / r["seconds"]
            results[name] = r
            print(f"{name:32s} {files:6d} files  {r['seconds']:7.2f} s  {r['images_per_s']:7.1f} img/s  "
                  f"peak RSS {r['peak_rss_mib']:7.1f} MiB", flush=True)
        for ours in ("phraseharmony (2 processes)", "phraseharmony (1 process)"):
            for peer in ("img2dataset (decode+re-encode)", "img2dataset (raw bytes)"):
                ratio = results[ours]["images_per_s"] / results[peer]["images_per_s"]
                print(f"ratio {ours} / {peer}: {ratio:.2f}")
    finally:
        server.terminate()

    if args.memory_records:
        memory_run(args.memory_records, work)
    shutil.rmtree(work, ignore_errors=True)


def memory_run(n: int, work: Path) -> None:
    """Ours alone on n tiny images with no latency: the record list, the ledger and the
    bounded in-flight set are what grows with n."""
    ctx = mp.get_context("spawn")
    ready, port = ctx.Event(), ctx.Value("i", 0)
    server = ctx.Process(target=serve, args=(ready, port, n, 32, 24, 0.0), daemon=True)
    server.start()
    ready.wait(600)
    base = f"http://127.0.0.1:{port.value}/VG_100K"
    records = [{"image_id": i, "width": 32, "height": 24, "url": f"{base}/{i}.jpg", "split": "train"}
               for i in range(1, n + 1)]
    (work / "many.json").write_text(json.dumps(records))
    try:
        r = run(OURS, str(work / "many.json"), str(work / "many"), "2")
    finally:
        server.terminate()
    print(f"memory: {n} records -> {r['counts']} in {r['seconds']:.1f} s "
          f"({n / r['seconds']:.0f} img/s), peak RSS {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
