#!/usr/bin/env bash
# One device call (about 5 minutes; twenty-third session): d128 causal 2k-4k on the
# persistent kernel without ping-pong (ab_d128c_2k_nopp_h100_2026-12-06: +1.3 / +3.6 %),
# checked by the forward GPU tests of the hopper backend, then the forward-only bf16 grid of
# the shipped code.  Everything in $OUT/all.tgz.  Carry .whl.
# Ran once (twenty-third session): 246 GPU tests passed, fa_grid_fwd_h100_2026-12-06_run5.
set -u
source benchmarks/device_setup.sh
TAIL=5 step gpu_tests_fwd 300 python3 -m pytest -q -m gpu tests/backends/test_hopper_cuda.py
ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid_fwd 200 python3 benchmarks/fa_grid.py --dtypes bf16 \
    --directions fwd --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT/grid"
pack_out
