#!/usr/bin/env bash
# One device call (about 8 minutes): the per-instruction stall samples of the CUDA forward
# (device_ncu_fwd_source.sh), then the full bf16 FA grid (head dims 64/128/256, every
# attnhub backend, auto-dispatch and the SDPA peers in one run).  Everything in $OUT comes
# back as one all.tgz.  Carry .whl.
set -u
NCU_SECONDS=${NCU_SECONDS:-100} bash benchmarks/device_ncu_fwd_source.sh
rm -f "$OUT/all.tgz"
source benchmarks/device_setup.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv
# Fixed per-head-dim configs: autotuning every grid key would not fit the lease.
ATTNHUB_TRITON_AUTOTUNE=0 timeout -s INT ${BENCH_SECONDS:-300} python3 benchmarks/fa_grid.py \
    --dtypes bf16 --exclude torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT" > "$OUT/fa_grid_log.txt" 2>&1
echo "grid rc=$?"; grep -E "wrote|flagged|✗" "$OUT/fa_grid_log.txt" | head
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
