"""``python -m train --config C [--set key=value ...] [--resume]``; under torchrun too:
``torchrun --nproc_per_node N -m train --config configs/train-ht.yaml``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from schemas.errors import UserError
from schemas.train_config import load_train_config
from train.loop import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train", description="Train a harmonizer on a built dataset."
    )
    parser.add_argument("--config", "-c", help="YAML training config (configs/train-*.yaml)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. data.dir=out/sample or steps=200 (repeatable)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in out_dir"
    )
    parser.add_argument(
        "--init-from", help="start from this run's (or the authors' latest_net_G.pth) weights"
    )
    args = parser.parse_args(argv)
    if args.init_from:
        args.sets.append(f"init_from={args.init_from}")
    import torch.distributed as dist

    try:
        cfg = load_train_config(args.config, args.sets)
        summary = train(cfg, resume=args.resume)
        if dist.is_initialized():
            dist.barrier()   # every rank done with its collectives before any leaves
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        # On every way out: a process that exits with the group alive can abort in
        # Gloo's worker threads during interpreter shutdown (see the end of this file).
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:   # (the group is gone by now)
        print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A rank leaves without the interpreter's teardown: Gloo's threads could still
        # abort a rank on its way out (SIGABRT, "terminate called without an active
        # exception") with its checkpoint already written: 1 of 100 two-rank runs here,
        # twice in CI. Nothing is left to tear down but buffers, flushed first.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
