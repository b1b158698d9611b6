#!/usr/bin/env bash
# One device call (about 4 minutes; twenty-third session): triton-fa2's forward against the
# floor kernel (benchmarks/_floor_kernel.py) and cuDNN, non-causal d64/d128, 2k-16k, fixed
# configs as in the grid (ATTNHUB_TRITON_AUTOTUNE=0).  Question: is the 60-line kernel of
# ../shared/DEVICE_NOTES.md (440 TFLOP/s at d64/2k, 520-554 with warp specialisation at d128)
# really ahead of triton-fa2 (377-381 and 452-515 in the grids), and if so by which config or
# construct.  Everything in $OUT/all.tgz.  Carry .whl.
# Ran once, non-causal only and before the host-descriptor and general-kernel variants were
# added (triton_floor_h100_2026-12-06); this version has not run yet.
set -u
source benchmarks/device_setup.sh
ATTNHUB_TRITON_AUTOTUNE=0 TAIL=80 step triton_floor 200 python3 benchmarks/triton_floor.py --out "$OUT" \
    --seqs 2048,16384 --causal 0,1
pack_out
