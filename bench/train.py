"""Training throughput: the loader's samples/s beside the model's step rate.

    .venv/bin/python bench/train.py                 # this CPU (needs `make demo` first)
    python bench/train.py --gpu --workers 0 16      # a GPU box: HT+ at 256^2, bf16

Input: the rows of a built dataset (default out/sample: real photos at 256^2)
replicated into one shard of ``--rows`` rows with 64-row groups, so the loader reads,
shuffles, decodes (two JPEGs + a PNG), flips and collates exactly as in training.
Baselines measured in the same run: the loader in-process (workers=0) for the worker
counts, and HT+ with materialised attention weights (HT's reference code) for the fused
attention. On a GPU the share of the ~1,350 samples/s limit (TRAINING.md: 0.58 TFLOP
per training sample at 256^2 on ~790 TFLOP/s) is printed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

H200_LIMIT = 1350.0  # samples/s, TRAINING.md


def replicate(src: Path, dest: Path, rows: int) -> Path:
    """A dataset folder with one train shard of ``rows`` rows copied from ``src``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pa.concat_tables(pq.read_table(p) for p in sorted((src / "data").rglob("*.parquet")))
    idx = [i % base.num_rows for i in range(rows)]
    table = base.take(idx)
    ids = pa.array([f"{s}~{i}" for i, s in enumerate(table["sample_id"].to_pylist())])
    table = table.set_column(table.schema.get_field_index("sample_id"), "sample_id", ids)
    (dest / "data" / "train").mkdir(parents=True, exist_ok=True)
    path = dest / "data" / "train" / "part-00000.parquet"
    pq.write_table(table, path, row_group_size=64, compression="none")
    manifest = {"name": "bench", "shards": [{"path": "data/train/part-00000.parquet", "split": "train",
                                             "rows": rows}]}
    (dest / "_manifest.json").write_text(json.dumps(manifest))
    return dest


def bench_loader(data: Path, workers: int, batch: int, size: int, device: str) -> dict:
    from schemas.train_config import TrainData
    from train.loader import Loader
    from train.sources import open_source

    loader = Loader(open_source(data), "train", TrainData(size=size, workers=workers, shuffle_buffer=256),
                    batch, 0, train=True, device=device)
    it = loader.epoch(0)
    next(it)  # workers started, first batch decoded
    n, t0 = 0, time.perf_counter()
    for b in it:
        n += len(b["sample_id"])
    rate = n / (time.perf_counter() - t0)
    loader.close()
    return {"workers": workers, "samples_per_s": round(rate, 1),
            "per_worker": round(rate / max(workers, 1), 1)}


def bench_model(kind: str, attention: str, size: int, batch: int, device: str, bf16: bool,
                steps: int, dims: dict | None = None, compile_: bool = False) -> dict:
    import torch

    from schemas.train_config import ModelConfig
    from train.losses import l1_loss
    from train.models import build_model, count_parameters

    cfg = ModelConfig(kind=kind, attention=attention, **(dims or {}))
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(cfg, size, 768).to(dev)
    step_model = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), 1e-4, betas=(0.5, 0.999))
    loss_fn = l1_loss(100.0)
    comp = torch.rand(batch, 3, size, size, device=dev)
    target = torch.rand(batch, 3, size, size, device=dev)
    mask = (torch.rand(batch, 1, size, size, device=dev) > 0.7).float()
    text = {"clip_phrase": torch.randn(batch, 768, device=dev)}

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = step_model(comp, mask, text)
        loss = loss_fn(out.float(), target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        for _ in range(3 if dev.type == "cuda" else 1):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
    except torch.OutOfMemoryError:
        return {"kind": kind, "attention": attention, "batch": batch, "samples_per_s": None, "note": "OOM"}
    rate = batch * steps / (time.perf_counter() - t0)
    out = {"kind": kind, "attention": attention, "size": size, "batch": batch,
           "params": count_parameters(model), "samples_per_s": round(rate, 2), "compile": compile_}
    if dev.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["share_of_limit"] = round(rate / H200_LIMIT, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "out" / "sample", help="a built dataset to replicate")
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--gpu", action="store_true", help="HT+ at 256^2 in bf16 on CUDA")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (GPU; minutes)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if not (args.data / "_manifest.json").exists():
        sys.exit(f"{args.data}: no built dataset; run `make demo` first (or pass --data)")

    results: dict = {"loader": [], "model": []}
    device = "cuda" if args.gpu else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        data = replicate(args.data, Path(tmp) / "bench", args.rows)
        for w in args.workers:
            results["loader"].append(bench_loader(data, w, 32, 256, device))
            print("loader", results["loader"][-1], flush=True)
    import torch

    tiny = {"dim": 32, "depth": 2, "heads": 2, "ffn": 64}
    if args.gpu:
        for b in args.batches:
            for attention in ("sdpa", "naive"):
                results["model"].append(bench_model("ht", attention, 256, b, device, True, 10))
                torch.cuda.empty_cache()
                print("model", results["model"][-1], flush=True)
        results["model"].append(bench_model("ht_text", "sdpa", 256, args.batches[-1], device, True, 10))
        print("model", results["model"][-1], flush=True)
        if args.compile:
            results["model"].append(bench_model("ht", "sdpa", 256, args.batches[-1], device, True, 10,
                                                 compile_=True))
            print("model", results["model"][-1], flush=True)
    else:
        # This CPU: the sample config's tiny model at 64^2, and one HT+ step at 256^2.
        for attention in ("sdpa", "naive"):
            results["model"].append(bench_model("ht", attention, 64, 8, device, False, 5, tiny))
            print("model", results["model"][-1], flush=True)
        results["model"].append(bench_model("ht", "sdpa", 256, 2, device, False, 1))
        print("model", results["model"][-1], flush=True)
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    best_loader = max(r["samples_per_s"] for r in results["loader"])
    base_loader = next((r["samples_per_s"] for r in results["loader"] if r["workers"] == 0), None)
    print("\n| loader workers | samples/s | per worker | vs workers=0 |\n|---|---|---|---|")
    for r in results["loader"]:
        ratio = f"{r['samples_per_s'] / base_loader:.2f}x" if base_loader else "–"
        print(f"| {r['workers']} | {r['samples_per_s']} | {r['per_worker']} | {ratio} |")
    print("\n| model | attention | size | batch | samples/s | vs naive | peak GiB | share of limit | "
          "loader/model |\n|---|---|---|---|---|---|---|---|---|")
    for r in results["model"]:
        if r["samples_per_s"] is None:
            print(f"| {r['kind']} | {r['attention']} | 256 | {r['batch']} | OOM | | | | |")
            continue
        naive = next((m["samples_per_s"] for m in results["model"]
                      if m["attention"] == "naive" and m["batch"] == r["batch"]
                      and m.get("size") == r["size"] and m["samples_per_s"]), None)
        vs = f"{r['samples_per_s'] / naive:.2f}x" if naive and r["attention"] == "sdpa" else "–"
        print(f"| {r['kind']}{' compiled' if r['compile'] else ''} | {r['attention']} | {r['size']} | "
              f"{r['batch']} | {r['samples_per_s']} | {vs} | {r.get('peak_gib', '–')} | "
              f"{r.get('share_of_limit', '–')} | {best_loader / r['samples_per_s']:.1f}x |")
    print(f"\npeak RSS of this process: {results['peak_rss_mib']} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
