"""What one decoding step's nucleus draw costs, against the top-k a cheaper exact one needs.

    .venv/bin/python bench/nucleus_cost.py [--rows 256 4096] [--device auto]

``tasks.captions.decoder.nucleus_pick`` sorts BLIP's whole vocabulary (30,524 tokens) per
sampled row per step. An exact top-p needs only the tokens before the cumulative
probability reaches top_p, so a top-k of a few dozen would do for a row whose top k
already hold top_p. This times, on the same logits in one process: the current draw,
a bare softmax (the floor both need) and softmax + top-k(64), at BLIP's vocabulary size,
with logits as peaked as a trained captioner's. It says whether the sort is worth
replacing on a device before anyone changes the decoder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from tasks.captions.decoder import nucleus_pick  # noqa: E402

VOCAB = 30524


def _timed(fn, device: torch.device, repeats: int) -> float:
    fn()   # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[256, 4096])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    g = torch.Generator(device="cpu").manual_seed(0)
    for rows in args.rows:
        # Scaled so the top 64 tokens hold top_p in ~80% of rows (the top token ~0.34), a
        # guess at a trained captioner's steps; a flatter row needs the full sort anyway.
        logits = (torch.randn(rows, VOCAB, generator=g) * 5.0).to(device)
        uniforms = torch.rand(rows, generator=g).to(device)
        pick = _timed(lambda: nucleus_pick(logits, uniforms, 0.9), device, args.repeats)
        soft = _timed(lambda: torch.softmax(logits.float(), dim=-1), device, args.repeats)
        topk = _timed(lambda: torch.softmax(logits.float(), dim=-1).topk(64, dim=-1), device, args.repeats)
        held = torch.softmax(logits.float(), dim=-1).topk(64, dim=-1).values.sum(-1)
        print(json.dumps({"device": str(device), "rows": rows, "nucleus_pick_ms": round(pick, 3),
                          "softmax_ms": round(soft, 3), "softmax_topk64_ms": round(topk, 3),
                          "pick_over_topk": round(pick / topk, 2),
                          "rows_whose_top64_hold_0.9": round(float((held >= 0.9).float().mean()), 3)}))


if __name__ == "__main__":
    main()
