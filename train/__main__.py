"""``python -m train --config C [--set key=value ...] [--resume]``; under torchrun too:
``torchrun --nproc_per_node N -m train --config configs/train-ht.yaml``."""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args(argv)
    try:
        cfg = load_train_config(args.config, args.sets)
        summary = train(cfg, resume=args.resume)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps(summary, default=str))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
