#!/usr/bin/env bash
# One device call (about 5 minutes): Nsight Compute on hopper-fa3's CUDA forward against
# cuDNN at the grid points where issue 4's forward target (>= 1.05x cuDNN) is missed
# (sixteenth session's grids): d64 2k causal (0.94-0.97x), d128 2k and 4k non-causal
# (0.98-1.02x), d256 4k non-causal (0.96-1.00x).  Reports in $OUT/ncu_fwd_*.txt.  Carry .whl.
set -u
source benchmarks/device_setup.sh
if [ -z "${STALLS_ONLY:-}" ]; then
ncu_prof fwd_d64_2k_causal --d 64 --s 2048 --causal --impls hopper-fa3,cudnn
ncu_prof fwd_d128_2k --d 128 --s 2048 --impls hopper-fa3,cudnn
ncu_prof fwd_d128_4k --d 128 --s 4096 --impls hopper-fa3,cudnn
ncu_prof fwd_d256_4k --d 256 --s 4096 --impls hopper-fa3,cudnn
fi
# Stall reasons per issued instruction and the instruction mix (the sections above do not
# break them down), the two forward kernels only; STALLS_ONLY=1 runs just this part.
for P in "64 2048 --causal" "128 2048"; do
    set -- $P
    timeout ${NCU_SECONDS:-90} ncu --clock-control none --profile-from-start off \
        --kernel-name regex:"fa3_fwd|fprop" --section WarpStateStats --section InstructionStats \
        --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
        python3 benchmarks/ncu_profile.py --d $1 --s $2 ${3:-} --impls hopper-fa3,cudnn \
        > "$OUT/ncu_fwd_stalls_d$1_$2${3:-}.txt" 2>&1
    echo "ncu stalls d$1 s$2 ${3:-} rc=$?"
    grep -E "^  [a-z]|stalled_(barrier|long_scoreboard|wait|mio|short|gmma|math|dispatch|no_inst|branch|sleeping|membar|lg|drain|not_selected|selected)|Executed Instructions  " \
        "$OUT/ncu_fwd_stalls_d$1_$2${3:-}.txt" | cut -c1-120
done
