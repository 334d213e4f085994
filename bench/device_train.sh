#!/usr/bin/env bash
# The GPU check of the training stage, as one short script for a lent GPU machine:
#   run (carry: .whl, out/sample):  bash bench/device_train.sh
# Installs the wheels the machine lacks (.whl/, made here by bench/device_wheels.sh),
# then runs bench/train.py --gpu (HT+ at 256^2, bf16, batch 16/32/64, fused vs materialised attention, the loader with
# 16 workers), then bench/clipseg.py --gpu (clipseg_ht beside HT+); results land in $OUT.
set -euo pipefail
export PYTHONPATH="/tmp/site:$PWD"
python3 -m pip install --quiet --no-deps --target /tmp/site .whl/*.whl
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 bench/train.py --gpu --workers 0 16 --rows 4096 --json "$OUT/train.json" | tee "$OUT/train.md"
# Harmonize by phrase: clipseg_ht against HT+ in one run (goal >= 0.8x at 256^2 bf16).
python3 bench/clipseg.py --gpu --batches 8 32 --json "$OUT/clipseg.json" | tee "$OUT/clipseg.md"
