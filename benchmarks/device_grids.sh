#!/usr/bin/env bash
# One device call (about 8 minutes): the bf16 and the fp16 FA grids of the shipped code, the
# peers (SDPA cuDNN / flash / efficient, triton-fa2) in the same run.  OpenCL and naive are
# excluded (timed at every point otherwise; an fp16 grid with them wrote nothing).
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
for dt in ${DTYPES:-bf16 fp16}; do
    ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid_$dt 280 python3 benchmarks/fa_grid.py \
        --dtypes $dt --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
        --warmup 10 --rep 40 --quiet --out "$OUT/$dt"
done
pack_out
