#!/usr/bin/env bash
# The one prepared script for a lent GPU machine: GPU correctness first, then the numbers
# docs/performance.md asks for, each saved under $OUT (default benchmarks/device_out):
#   tests.txt       the GPU test file (device batches, training and ranking on CUDA, bf16) and
#                   the model, loop-step and sampler tests (these on CPU) of the same checkout
#   bench_loop.txt  fp32 and bf16 scored pairs/s of the loop against a bare loop at batches
#                   1,024 to 65,536, the host's share of step time (profiler: 1 - GPU busy /
#                   wall), peak GPU memory, full-ranking time per domain against an epoch
# Assumes a CUDA build of torch and this project are installed (pip install -e '.[test]');
# it installs nothing itself. About 6-8 minutes on an H100/H200, most of it the last line
# (generating and splitting synthetic:1000000x2 on the host, then its GPU steps); the device
# run's $OUT, when set, receives every file. A failing test does not stop the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
export ADC_DATA_ROOT="${ADC_DATA_ROOT:-$(cd .. && pwd)/shared/data}"
OUT="${OUT:-benchmarks/device_out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
python -m pytest -q -p no:cacheprovider tests/train/test_gpu.py tests/model/test_model.py \
    tests/train/test_loop_steps.py tests/data/test_torch_sampler.py 2>&1 | tee "$OUT/tests.txt" || true
python benchmarks/bench_loop.py --gpu --bf16 --batches 1024,4096,16384,65536 --steps 50 2>&1 | tee "$OUT/bench_loop.txt"
python benchmarks/bench_loop.py --gpu --bf16 --task synthetic:1000000x2 --batches 16384,65536 --steps 30 \
    2>&1 | tee "$OUT/bench_loop_1e6.txt"
