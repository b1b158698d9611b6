#!/bin/bash
# One device call for triton-fa2's split backward: the lean dK/dV kernel (one warpgroup,
# 64 keys, two programs per SM) and the 4-warp dQ tiles, pinned one at a time.  GPU
# correctness with NaN-poisoned gradients first, then TFLOP/s next to the default kernels,
# SDPA cuDNN and SDPA flash in the same process (device_check.py --lean-bwd, fixed
# configs).  About 4 minutes: compile jobs in a pool, ~60 checks, 8 timed points.
#   bash benchmarks/device_triton_lean_bwd.sh [--budget S]
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
python3 backends/attnhub_triton/device_check.py --lean-bwd --out "$OUT" --budget 240 "$@" \
    2>&1 | tee "$OUT/lean_bwd_log.txt" | grep -v '^\[check\] ok'
