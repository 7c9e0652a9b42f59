#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (see README, "Benchmarks"): GPU correctness
# first, then the training benchmark's numbers. Assumes a CUDA build of torch and this
# project are installed (pip install -e '.[test]'); it installs nothing itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export ADC_DATA_ROOT="${ADC_DATA_ROOT:-$(cd .. && pwd)/shared/data}"
nvidia-smi --query-gpu=name,memory.total --format=csv
python -m pytest -q tests/train/test_gpu.py tests/model/test_model.py tests/train/test_loop_steps.py
python benchmarks/bench_train.py --gpu --epochs 3
