#!/usr/bin/env bash
# The GPU check of the captions stage, as one short script for a lent GPU machine:
#   run (carry: .whl):  bash bench/device_captions.sh
# Installs the wheels the machine lacks (.whl/, made here by bench/device_wheels.sh),
# then runs bench/captions.py with BLIP-large's and CLIP ViT-L/14's architectures (random
# weights), bf16, 14 prefetch workers, k = 8: the fused decoder and transformers'
# generate (the baseline) at two batch sizes, same photos, one process; first, whether
# the fused decoder picks generate's captions on CUDA (fp32: all; bf16: most), and what
# a step's nucleus draw (a full-vocabulary sort) costs against a top-k.
# Results in $OUT.
set -euo pipefail
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
python3 -m pip install --quiet --no-deps --target /tmp/site .whl/*.whl
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 bench/decoder_parity.py --size full --images 32 --json "$OUT/parity.json" 2>&1 \
  | grep -v -e '^Loading' -e '^Writing' | tee "$OUT/parity.log"
python3 bench/nucleus_cost.py --rows 256 4096 2>&1 | tee "$OUT/nucleus_cost.log"
python3 bench/captions.py --size full --images 4096 --batch 256 512 --decoder generate fused \
  --workers 14 --json "$OUT/captions.json" 2>&1 | grep -v -e '^Loading' -e '^Writing' | tee "$OUT/captions.log"
