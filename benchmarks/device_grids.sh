#!/usr/bin/env bash
# One device call (about 8 minutes): the FP8 quick check (FP8 d256 now ping-pongs at every
# length: 1316 against 1191 TFLOP/s at 16k in the first measurement) and the bf16 and fp16
# FA grids of the shipped code, the peers (SDPA cuDNN / flash / efficient, triton-fa2) in
# the same run.  OpenCL and naive are excluded (timed at every point otherwise; an fp16
# grid with them wrote nothing).  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=8 step fp8_quick 120 python3 backends/attnhub_hopper/cuda_check.py --fp8 --quick --out "$OUT"
for dt in ${DTYPES:-bf16 fp16}; do
    ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid_$dt 270 python3 benchmarks/fa_grid.py \
        --dtypes $dt --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
        --warmup 10 --rep 40 --quiet --out "$OUT/$dt"
done
pack_out
