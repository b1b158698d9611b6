#!/usr/bin/env bash
# The fortieth session's second call (BUDGET seconds, default 400; carry .whl): the bf16 FA
# grid through every backend with triton-fa2's s39 defaults (pp-dynamic forward at d64/d128,
# m64o d128 and h64 d256 backward), auto-dispatch from an empty cache, 3 timing rounds a
# point; the first grid since run20 (s33) with triton-fa2's Gluon kernels in it.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s40b ${BUDGET:-400}
grid_step bf16_r3 "$(left 380)" bf16 --rounds 3
gpu_clocks
repack
