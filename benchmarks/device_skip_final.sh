#!/usr/bin/env bash
# One device call (about 6 minutes; twenty-first session): Tile.skip shipped (a causal
# warpgroup issues no S product for a first key block its rows see nothing of): the CUDA
# forward's GPU tests, then the forward-only bf16 FA grid with the peers in the same run.
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=4 step fwd_gpu_tests 240 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py
ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid_fwd 200 python3 benchmarks/fa_grid.py --dtypes bf16 \
    --directions fwd --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT"
pack_out
