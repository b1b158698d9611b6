#!/bin/bash
# One device call for triton-fa2's lean kernels that have not been timed yet (fixed configs,
# device_check.py, peers in the same process):
#  1. --lean-bwd: the split backward's lean dK/dV kernel (one warpgroup, 64 keys, two
#     programs per SM), the 4-warp dQ tiles and the Δ pre-pass, pinned one at a time: GPU
#     correctness with NaN-poisoned gradients, then TFLOP/s next to the default kernels,
#     SDPA cuDNN and SDPA flash (about 5 min);
#  2. --lean --dims 256: the lean forward at head dim 256 (64x32 tiles, two programs per
#     SM) against the general forward, cuDNN and flash (about 2 min).
#   bash benchmarks/device_triton_lean.sh
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
mkdir -p "$OUT/lean_bwd" "$OUT/lean_d256"
python3 backends/attnhub_triton/device_check.py --lean-bwd --out "$OUT/lean_bwd" --budget 300 \
    2>&1 | tee "$OUT/lean_bwd/log.txt" | grep -v '^\[check\] ok'
python3 backends/attnhub_triton/device_check.py --lean --dims 256 --out "$OUT/lean_d256" \
    --budget 120 2>&1 | tee "$OUT/lean_d256/log.txt" | grep -v '^\[check\] ok'
