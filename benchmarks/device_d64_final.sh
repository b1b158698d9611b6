#!/usr/bin/env bash
# One device call (about 3 minutes; nineteenth session) after every d64 192-row tile took
# ones_sum (and causal 2k the persistent 192-row tile): the CUDA forward's GPU tests (every
# shipped tile), then the bf16 d64 FA grid with its peers.  Everything in $OUT/all.tgz.
set -u
source benchmarks/device_setup.sh
TAIL=4 step fwd_gpu_tests 200 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py
ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid_d64 150 python3 benchmarks/fa_grid.py --dtypes bf16 \
    --head-dims 64 --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT"
pack_out
