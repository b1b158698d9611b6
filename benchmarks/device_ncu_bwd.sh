#!/usr/bin/env bash
# One device call (about 5 minutes): Nsight Compute on hopper-fa3's CUDA backward against
# cuDNN's, bf16 non-causal 16k: d128 with the shipped tile and with $TILE (default
# s2-ahead, through ATTNHUB_HOPPER_BWD_TILE), and d256 (the L2-bandwidth question in
# NOTES.md).  Adds the L2 / memory sections to the usual ones.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_BWD=1
NCU_SECTIONS="$NCU_SECTIONS --section MemoryWorkloadAnalysis_Chart --section MemoryWorkloadAnalysis_Tables"
NCU_SECONDS=${NCU_SECONDS:-100}
ncu_prof cuda_bwd_d128_16k --d 128 --s 16384 --backward --impls hopper-fa3,cudnn
ATTNHUB_HOPPER_BWD_TILE=${TILE:-s2-ahead} ncu_prof cuda_bwd_d128_16k_${TILE:-s2-ahead} \
    --d 128 --s 16384 --backward --impls hopper-fa3
ncu_prof cuda_bwd_d256_16k --d 256 --s 16384 --backward --impls hopper-fa3,cudnn
# Stall reasons per issued instruction (the sections above do not break them down), the two
# backward kernels only: what the 2026-12-05 notes compare (mio_throttle, short_scoreboard).
for D in 128 256; do
    timeout ${NCU_SECONDS} ncu --clock-control none --profile-from-start off \
        --kernel-name regex:"fa3_bwd|bprop" --section WarpStateStats --section InstructionStats \
        --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
        python3 benchmarks/ncu_profile.py --d $D --s 16384 --backward --impls hopper-fa3,cudnn \
        > "$OUT/ncu_stalls_d$D.txt" 2>&1
    echo "ncu stalls d$D rc=$?"
    grep -E "^  [a-z]|stalled_(barrier|long_scoreboard|wait|mio|short|gmma)|Executed Instructions  " \
        "$OUT/ncu_stalls_d$D.txt" | cut -c1-120
done
