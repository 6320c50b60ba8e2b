#!/usr/bin/env bash
# The device check (issue 12): train -> surface -> sharpness -> gap of the seed-004
# SmallCNN (32x32 SVHN-format data) and a PreResNet (CIFAR-shaped data) on CUDA and on
# the CPU, in under 5 minutes on one GPU; writes benchmarks/results/device.json.
# On a lent machine:  bash benchmarks/device_check.sh   (from the repository root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
    .venv/bin/pip install -q -c constraints.txt -e .
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 290 .venv/bin/python benchmarks/device_check.py "$@"
