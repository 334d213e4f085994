"""Harmonize-by-phrase training speed: clipseg_ht against HT+ in one run, and CLIPSeg's
share of a step.

    .venv/bin/python bench/clipseg.py               # this CPU (HT+ at 256^2, batch 2)
    python bench/clipseg.py --gpu --batches 8 32    # a GPU box: bf16

Both models at the paper's size (HT+ 4.77M parameters; CLIPSeg with
CIDAS/clipseg-rd64-refined's architecture, CLIP ViT-B/16 and reduce_dim 64, random
weights: the hub is not reachable and the cost does not depend on the weights). The
baseline is plain HT+ on the same batch in the same run; "CLIPSeg share" is its frozen
forward (no grad, bf16 on the GPU) timed alone, over the clipseg_ht step.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def timed(fn, steps: int, sync) -> float:
    """Seconds per call (after one warm-up call)."""
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t0) / steps


def bench(kind: str, clipseg: Path, size: int, batch: int, device: str, steps: int) -> dict:
    import torch

    from schemas.train_config import ModelConfig
    from train.losses import l1_loss
    from train.models import build_model, count_parameters, split_output
    from train.region import region_loss, tokenize

    dev = torch.device(device)
    bf16 = dev.type == "cuda"
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, clipseg=str(clipseg)), size).to(dev)
    opt = torch.optim.Adam(model.parameters(), 1e-4, betas=(0.5, 0.999))
    comp = torch.rand(batch, 3, size, size, device=dev)
    target = torch.rand(batch, 3, size, size, device=dev)
    mask = (torch.rand(batch, 1, size, size, device=dev) > 0.7).float()
    ids, att, _ = tokenize(str(clipseg), ["the red car on the left of the man"] * batch)
    extras = {"phrase_ids": ids.to(dev), "phrase_attention": att.to(dev)}
    loss_fn = l1_loss(100.0)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out, logits = split_output(model(comp, mask, extras))
        loss = loss_fn(out.float(), target, mask)
        if kind == "clipseg_ht":
            loss = loss + region_loss(logits.float(), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    per_step = timed(step, steps, sync)
    out = {"kind": kind, "size": size, "batch": batch, "trainable_params": count_parameters(model),
           "samples_per_s": round(batch / per_step, 2)}
    if kind == "clipseg_ht":
        frozen = timed(lambda: model.clipseg(comp, extras["phrase_ids"], extras["phrase_attention"]),
                       steps, sync)
        out["clipseg_share"] = round(frozen / per_step, 3)
        out["clipseg_params"] = sum(p.numel() for p in model.clipseg.net.parameters())
    if dev.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--batches", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import tasks.core.torch_compat  # noqa: F401
    from model_fixtures import make_clipseg

    device = "cuda" if args.gpu else "cpu"
    batches = args.batches or ([8, 32] if args.gpu else [2])
    steps = args.steps or (10 if args.gpu else 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clipseg = make_clipseg(Path(tmp) / "clipseg", size="full")
        print(f"CLIPSeg (ViT-B/16, random weights) made in {time.perf_counter() - t0:.0f} s", flush=True)
        for b in batches:
            for kind in ("ht", "clipseg_ht"):
                rows.append(bench(kind, clipseg, 256, b, device, steps))
                print(rows[-1], flush=True)
    print("\n| model | batch | samples/s | vs ht | CLIPSeg share of a step | trainable params | peak GiB |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        base = next(x["samples_per_s"] for x in rows if x["kind"] == "ht" and x["batch"] == r["batch"])
        print(f"| {r['kind']} | {r['batch']} | {r['samples_per_s']} | {r['samples_per_s'] / base:.2f}x | "
              f"{r.get('clipseg_share', '–')} | {r['trainable_params']:,} | {r.get('peak_gib', '–')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
