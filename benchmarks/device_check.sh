#!/usr/bin/env bash
# The one prepared script for a lent GPU machine: GPU correctness first, then the numbers
# docs/performance.md asks for, each saved under $OUT (default benchmarks/device_out):
#   gpu.txt              the card, driver and torch build
#   tests.txt            the GPU test file (device batches, training and ranking on CUDA, bf16) and
#                        the model, loop-step and sampler tests (these on CPU) of the same checkout
#   train.txt            the main command without Ray on the GPU: python -m adc_dist.train --local --use_gpu
#                        (the default model and recipe on amazon-book-music, test NDCG@10 and wall time)
#   loop_default.txt     the default model (gmf): fp32 and bf16 scored pairs/s at batches 1,024 to
#                        65,536, the host's share of step time (profiler: 1 - GPU busy / wall), peak
#                        GPU memory, batch building alone, full-ranking time per domain against an epoch
#   loop_paper.txt       the same for the paper's shape, against a bare hand-written loop
#   batch.txt            validation NDCG@10 at equal epochs and seconds per epoch, batches 1,024 to 65,536
#   loop_default_1e6.txt the default model on synthetic:1000000x2 at batches 16,384 and 65,536
#   profile.txt          kernels, host time and host syncs of a step (benchmarks/gpu_step_profile.py),
#                        both models, replayed from CUDA graphs and eager
# Arguments name the parts to run, in that order (default: all of them, as listed above):
#   bash benchmarks/device_check.sh tests loop_default profile
# The device machine has torch but neither Ray nor pip access: nothing here imports Ray, and the
# project runs from the checkout (PYTHONPATH) instead of an install. Data: $ADC_DATA_ROOT, else
# .devdata/ (a copy of ../shared/data/amazon4_cdtf carried to the machine, since ../shared does
# not travel), else ../shared/data. Every step has its own time limit and a failing step does not
# stop the later ones; all of it takes about 6-8 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ADC_DATA_ROOT:-}" ]; then
    if [ -d .devdata ]; then ADC_DATA_ROOT="$PWD/.devdata"; else ADC_DATA_ROOT="$(cd .. && pwd)/shared/data"; fi
fi
export ADC_DATA_ROOT PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ADC_CACHE_DIR="${ADC_CACHE_DIR:-$(mktemp -d)}"  # the 10^6-user split is made once, read twice
PY="${PYTHON:-python3}"
OUT="${OUT:-benchmarks/device_out}"
mkdir -p "$OUT"
rm -f "$OUT"/*.txt  # a part appends to its file (profile runs four times into one)
step() {  # step SECONDS FILE COMMAND...: run it under a time limit, its output also in $OUT/FILE
    local limit=$1 file=$2; shift 2
    echo "== $* (limit ${limit} s)" | tee -a "$OUT/$file"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$file"
    echo "== rc ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$OUT/$file"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
    | tee -a "$OUT/gpu.txt"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(tests train loop_default loop_paper batch loop_default_1e6 profile)
for part in "${parts[@]}"; do
    case "$part" in
    tests) step 180 tests.txt "$PY" -m pytest -q -p no:cacheprovider tests/train/test_gpu.py tests/train/test_graphed.py \
        tests/model/test_model.py tests/train/test_loop_steps.py tests/data/test_torch_sampler.py ;;
    train) step 150 train.txt "$PY" -m adc_dist.train --local --use_gpu --storage_path "$(mktemp -d)" ;;
    loop_default) step 120 loop_default.txt "$PY" benchmarks/bench_loop.py --model default --gpu --bf16 \
        --batches 1024,4096,16384,65536 --steps 50 ;;
    loop_paper) step 120 loop_paper.txt "$PY" benchmarks/bench_loop.py --gpu --bf16 --batches 1024,4096,16384,65536 \
        --steps 50 ;;
    batch) step 150 batch.txt "$PY" benchmarks/bench_batch.py --gpu --batches "${BATCHES:-1024,4096,16384,65536}" \
        --epochs 20 ;;
    loop_default_1e6) step 120 loop_default_1e6.txt "$PY" benchmarks/bench_loop.py --model default --gpu --bf16 \
        --task synthetic:1000000x2 --batches 16384,65536 --steps 30 --no-numpy ;;
    profile) for args in "" "--eager" "--model paper" "--model paper --eager"; do
            step 60 profile.txt "$PY" benchmarks/gpu_step_profile.py $args --top 12
        done ;;
    *) echo "device_check.sh: unknown part $part" >&2; exit 2 ;;
    esac
done
