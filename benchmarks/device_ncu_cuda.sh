#!/usr/bin/env bash
# One device call (about 3 minutes): Nsight Compute on hopper-fa3's CUDA forward against
# cuDNN: bf16 d128/16k and d64/2k (the short-sequence gap), FP8 d256/16k.  Carry .whl.
set -u
source benchmarks/device_setup.sh
SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy
          --section LaunchStats --section WarpStateStats --section SchedulerStats"
prof() {  # name, args...
    local name=$1; shift
    timeout ${NCU_SECONDS:-90} ncu --clock-control none --profile-from-start off $SECTIONS \
        python3 benchmarks/ncu_profile.py "$@" > "$OUT/ncu_$name.txt" 2>&1
    echo "ncu $name rc=$?"
    grep -E "Context [0-9]+, Stream|Duration|Compute \(SM\) Throughput|Waves Per SM|Issue Slots Busy|^\[" "$OUT/ncu_$name.txt" | head -30
}
prof cuda_fwd_d128_16k --d 128 --s 16384 --impls hopper-fa3,cudnn
prof cuda_fwd_d128_2k --d 128 --s 2048 --impls hopper-fa3,cudnn
prof cuda_fp8_d256_16k --d 256 --s 16384 --impls hopper-fa3,cudnn --fp8
