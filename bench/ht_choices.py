"""HT+ as its authors built it against the choices this project made before reading
their code, trained side by side on the same rows.

    .venv/bin/python bench/ht_choices.py                  # needs `make demo` (out/sample)
    .venv/bin/python bench/ht_choices.py --data out/vgphrasecut --size 256 --steps 20000 --full

Every run trains the same HT+ (by default a small one at 64^2, so it fits this CPU) from
the same seed on the training split, then is evaluated on every row of the test split
(clean protocol). "authors" is the default config; "earlier" flips all six settings to
this project's earlier choices; each "earlier: <key>" flips one. The table gives the
test fMSE / MSE / PSNR (mean and spread over --seeds for the two full configs) and the
ratio of fMSE to the authors' in the same run. On the sample (a few dozen rows) this
tells whether a choice breaks training, not which is better at scale.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (key, the earlier choice); the authors' value is each key's default.
EARLIER = [
    ("model.input_range", "symmetric"),
    ("model.output", "unit_tanh"),
    ("model.positions", "normalized"),
    ("model.init", "normal"),
    ("optim.l1_range", "symmetric"),
    ("optim.schedule", "step"),
]


def run(data: Path, out: Path, overrides: list[str], args) -> dict:
    from schemas.train_config import load_train_config
    from train.evaluate import evaluate
    from train.loop import train

    small = [] if args.full else ["model.dim=64", "model.depth=3", "model.heads=2", "model.ffn=128"]
    cfg = load_train_config(None, [
        f"data.dir={data}", f"out_dir={out}", f"data.size={args.size}", "data.workers=0",
        f"steps={args.steps}", f"batch_size={args.batch}", f"optim.lr={args.lr}", "data.val_split=null",
        f"checkpoint_every={args.steps}", f"log_every={args.steps}", *small, *overrides])
    t0 = time.perf_counter()
    summary = train(cfg, say=None)
    seconds = time.perf_counter() - t0
    result = evaluate(Path(summary["checkpoint"]), data, "test", out / "eval", workers=0)
    overall = result["overall"]
    return {"fmse": overall["fmse"], "mse": overall["mse"], "psnr": overall["psnr"], "seconds": seconds,
            "input_fmse": result["input_overall"]["fmse"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "out" / "sample")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="HT+ at the paper's size")
    args = ap.parse_args()
    configs = [("authors", []), ("earlier", [f"{k}={v}" for k, v in EARLIER])]
    configs += [(f"earlier: {k}={v}", [f"{k}={v}"]) for k, v in EARLIER]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in configs:
            seeds = range(args.seeds) if name in ("authors", "earlier") else range(1)
            for seed in seeds:
                got = run(args.data, Path(tmp) / f"{len(results)}-{seed}", [*overrides, f"seed={seed}"], args)
                results.setdefault(name, []).append(got)
                print(f"{name} seed {seed}: fMSE {got['fmse']:.1f}, PSNR {got['psnr']:.2f} "
                      f"({got['seconds']:.0f} s)", flush=True)
    base = statistics.mean(r["fmse"] for r in results["authors"])
    first = results["authors"][0]
    print(f"\n{args.steps} steps, batch {args.batch}, {args.size}^2, lr {args.lr}, "
          f"{'HT+' if args.full else 'HT+ dim 64 depth 3'}; test split, input composites fMSE "
          f"{first['input_fmse']:.1f}\n")
    print("| config | fMSE | MSE | PSNR | fMSE / authors' | seeds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        def cell(key: str, digits: int) -> str:
            values = [r[key] for r in rows]
            mean = statistics.mean(values)
            spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
            return f"{mean:.{digits}f}{spread}"
        ratio = statistics.mean(r["fmse"] for r in rows) / base
        print(f"| {name} | {cell('fmse', 1)} | {cell('mse', 1)} | {cell('psnr', 2)} | {ratio:.2f} "
              f"| {len(rows)} |")


if __name__ == "__main__":
    main()
