#!/usr/bin/env bash
# One device call (about 8 minutes; written in the twenty-fifth session, not yet run): the
# bf16 FA grid twice on one machine, first with three timing rounds per point (fa_grid
# --rounds 3: every method timed once more per round, the order rotated, the median kept),
# then with one timing each as before, both with the matmul ceiling and the GPU's clocks
# (nvidia-smi) recorded before and after.  Question: do the ratios to cuDNN that the
# targets are read from move when peers and contenders share each round's clocks?  The
# twenty-fifth session saw single grid timings 5-12 % above interleaved rounds, cuDNN lifted
# more than ours at some points (benchmarks/NOTES.md).  Everything in $OUT/all.tgz.
# Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
G="python3 benchmarks/fa_grid.py --dtypes bf16 --warmup 10 --rep 40 --quiet
   --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient"
TAIL=4 step grid_rounds3 330 $G --rounds 3 --out "$OUT/rounds3"
TAIL=4 step grid_single 220 $G --out "$OUT/single"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv \
    > "$OUT/nvidia_smi.txt" 2>&1
pack_out
