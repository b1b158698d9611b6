#!/usr/bin/env bash
# One call on the lent H100 (≈ 9 minutes): Nsight Compute profiles of the forward and
# backward kernels against cuDNN and SDPA-flash (d128/16k, d64/16k), then the full FA grid in
# bf16 and fp16 with every GPU backend, auto-dispatch and the SDPA peers in one run.
# Results land in $OUT.  Carry .whl.
set -u
source benchmarks/device_setup.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv
# Fixed per-head-dim configs: autotuning every grid key would not fit the lease.
export ATTNHUB_TRITON_AUTOTUNE=0
if [ -z "${SKIP_CHECKS:-}" ]; then
    timeout 90 python3 benchmarks/fp8_api_check.py 2>&1 | tee "$OUT/fp8_api_check.txt" | tail -8
    timeout 80 python3 benchmarks/hf_compile_gpu.py --backends torch-sdpa-efficient \
        torch-sdpa-cudnn --no-llama --out "$OUT" 2>&1 | tail -6
    timeout 60 attnhub check torch-sdpa-efficient --device cuda --quick > "$OUT/check_efficient.txt" 2>&1
    echo "check efficient rc=$?"; tail -3 "$OUT/check_efficient.txt"
fi
[ -z "${SKIP_FWD128:-}" ] && ncu_prof fwd_d128_16k --d 128 --s 16384
ncu_prof bwd_d128_16k --d 128 --s 16384 --backward --impls triton-fa2,cudnn,flash
ncu_prof fwd_d64_16k --d 64 --s 16384 --impls triton-fa2,hopper-fa3,cudnn
timeout -s INT ${BENCH_SECONDS:-400} python3 benchmarks/fa_grid.py --dtypes bf16 fp16 \
    --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT" 2>&1 | tee "$OUT/fa_grid_log.txt" | tail -40
