#!/usr/bin/env bash
# Wheels a lent GPU machine lacks, into .whl/ (carried there; device_*.sh install them).
# Its image has python3 3.12 with torch, transformers, numpy, pyarrow, opencv, PIL, yaml,
# nvidia-ml-py (the device tool's KINDS.md lists them); these are the packages of ours
# beyond that, at the versions this checkout's .venv runs (make setup first).
set -euo pipefail
cd "$(dirname "$0")/.."
packages="open_clip_torch ftfy wcwidth pydantic pydantic_core annotated-types typing-inspection"
pins=$(.venv/bin/pip freeze --all 2>/dev/null | grep -i -E "^($(echo "$packages" | tr ' ' '|' | sed 's/[-_]/[-_]/g'))==")
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
.venv/bin/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_17_x86_64 --implementation cp -d .whl $pins
ls .whl
