#!/usr/bin/env bash
# One device call (about 2 minutes): the bf16 FA grid, forward only, of the shipped code
# with its peers in the same run (a second forward measurement after the nineteenth
# session's changes).  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid_fwd 200 python3 benchmarks/fa_grid.py --dtypes bf16 \
    --directions fwd --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT"
pack_out
