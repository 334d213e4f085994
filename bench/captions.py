"""The captions stage end to end: read -> decode -> preprocess -> BLIP k candidates + beam ->
CLIP re-rank -> rows, in photos/s, split by phase, with peak memory.

    .venv/bin/python bench/captions.py                     # this CPU: tiny models
    python3 bench/captions.py --size full --images 2048    # a GPU: the real architectures

Models are built through the real classes with random weights (throughput does not
depend on the weights' values): ``tiny`` as in the tests, ``full`` BLIP-large's and
CLIP ViT-L/14's architectures. Photos are synthetic 640x480 JPEGs (smooth colour
fields with edges and noise, ~80 KB, VG-like sizes). Phases are timed with the device
synchronised at their ends; "outside the models" is what starves a GPU. On CUDA the GPU
is sampled through NVML every 50 ms for its busy share.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def make_photos(folder: Path, n: int, seed: int = 0, unique: int = 256) -> list[int]:
    """``unique`` distinct photos, copied to fill ``n`` files (decoding cost is the same)."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    ids = []
    for i in range(n):
        if i >= unique:
            (folder / f"{i + 1}.jpg").write_bytes((folder / f"{i % unique + 1}.jpg").read_bytes())
            ids.append(i + 1)
            continue
        c = rng.uniform(0, 255, (4, 3)).astype(np.float32)
        w = np.stack([(1 - xx / 640) * (1 - yy / 480), xx / 640 * (1 - yy / 480),
                      (1 - xx / 640) * yy / 480, xx / 640 * yy / 480], -1)
        img = w @ c + rng.normal(0, 12, (480, 640, 3))
        cx, cy, r = rng.uniform(100, 540), rng.uniform(100, 380), rng.uniform(30, 120)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        (folder / f"{i + 1}.jpg").write_bytes(buf.tobytes())
        ids.append(i + 1)
    return ids


class GpuSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        self.samples, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--batch", type=int, nargs="+", default=[16])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--k", type=int, default=8)
    # The baseline, measured in the same run: transformers' generate (captions.decoder).
    ap.add_argument("--decoder", nargs="+", choices=("fused", "generate"), default=["generate", "fused"])
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()

    import torch

    import tasks.core.torch_compat  # noqa: F401
    from model_fixtures import make_blip, make_clip
    from schemas.config import load_config
    from tasks.captions import engine, prefetch
    from tasks.captions.stage import caption_images

    work = Path(tempfile.mkdtemp(prefix="ph-captions-bench-"))
    t0 = time.perf_counter()
    ids = make_photos(work / "out" / "images", a.images)
    blip = make_blip(work / "blip", "tiny" if a.size == "tiny" else "large")
    clip = make_clip(work / "clip", "tiny" if a.size == "tiny" else "ViT-L-14")
    print(f"{a.images} photos and {a.size} models written in {time.perf_counter() - t0:.0f} s")
    results = []
    for batch, decoder in [(b, d) for b in a.batch for d in a.decoder]:
        cfg = load_config(None, [f"captions.blip_model={blip}", f"captions.clip_model={clip}",
                                 f"captions.candidates={a.k}", f"captions.batch_size={batch}",
                                 f"captions.workers={a.workers}", f"captions.decoder={decoder}"],
                          work / "out")
        models = engine.load_models(cfg.captions.blip_model, cfg.captions.clip_model, "auto", "bfloat16")
        timers = {"wait_for_photos": 0.0, "wait_for_tokens": 0.0, "to_device": 0.0, "blip": 0.0,
                  "blip_vision": 0.0, "clip": 0.0}   # blip_vision: the part of blip before decoding
        sync = torch.cuda.synchronize if models.device.type == "cuda" else (lambda: None)

        def timed(name, fn):
            def wrapper(*args, **kwargs):
                start = time.perf_counter()
                out = fn(*args, **kwargs)
                sync()
                timers[name] += time.perf_counter() - start
                return out
            return wrapper

        def timed_batches(*args, **kwargs):
            it = real_batches(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                timers["wait_for_photos"] += time.perf_counter() - start
                yield item

        real_batches = prefetch.batches
        prefetch.batches = timed_batches
        patched = {n: getattr(engine, n) for n in ("caption_batch", "blip_image_tokens", "embed_images",
                                                    "embed_tokens", "to_pixels")}
        engine.caption_batch = timed("blip", patched["caption_batch"])
        engine.blip_image_tokens = timed("blip_vision", patched["blip_image_tokens"])
        engine.embed_images = timed("clip", patched["embed_images"])
        engine.embed_tokens = timed("clip", patched["embed_tokens"])
        engine.to_pixels = timed("to_device", patched["to_pixels"])
        real_get = prefetch.Tokens.get
        prefetch.Tokens.get = timed("wait_for_tokens", real_get)
        prefetch.start_pool(a.workers)
        caption_images(cfg, models, ids[:batch], None)   # warm-up: kernels, allocator
        for k in timers:
            timers[k] = 0.0
        sampler = GpuSampler() if models.device.type == "cuda" else None
        if sampler:
            torch.cuda.reset_peak_memory_stats()
            sampler.start()
        start = time.perf_counter()
        table, skips = caption_images(cfg, models, ids, None)
        seconds = time.perf_counter() - start
        if sampler:
            sampler.stop.set()
        prefetch.batches = real_batches
        prefetch.Tokens.get = real_get
        for n, fn in patched.items():
            setattr(engine, n, fn)
        rss = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024
        res = {"size": a.size, "device": models.precision_kind, "k": a.k, "batch": batch, "decoder": decoder,
               "workers": a.workers, "photos": table.num_rows, "seconds": round(seconds, 2),
               "photos_per_s": round(table.num_rows / seconds, 1 if table.num_rows / seconds > 10 else 3),
               "phases_s": {k: round(v, 2) for k, v in timers.items()},
               "outside_models_share": round(1 - (timers["blip"] + timers["clip"]) / seconds, 3),
               "peak_rss_mib": rss}
        if sampler:
            res["gpu_busy_mean_pct"] = round(float(np.mean(sampler.samples)), 1)
            res["gpu_peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            res["projected_77262_photos_min"] = round(77262 / res["photos_per_s"] / 60, 1)
        base = next((r for r in results if r["batch"] == batch and r["decoder"] == "generate"), None)
        if base and decoder != "generate":
            def speedup(before, after):
                return round(before / max(after, 1e-9), 2)
            old, new = base["phases_s"], timers
            res["vs_generate"] = {"photos_per_s": speedup(res["photos_per_s"], base["photos_per_s"]),
                                  "blip": speedup(old["blip"], new["blip"]),
                                  "blip_vision": speedup(old["blip_vision"], new["blip_vision"]),
                                  "blip_decoding": speedup(old["blip"] - old["blip_vision"],
                                                           new["blip"] - new["blip_vision"])}
        results.append(res)
        print(json.dumps(res))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
