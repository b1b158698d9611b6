#!/usr/bin/env bash
# One device call, ready after the thirtieth session (BUDGET seconds in all, default 560;
# $OUT/all.tgz re-packed after every step; carry .whl).
# (1) Nsight Compute on d128 non-causal 2k, hopper-fa3 against cuDNN (1.02-1.05x in eight
#     interleaved runs, the point short with d64 causal 2k): the headline sections, then
#     stall reasons per issued instruction and the instruction mix of the two kernels.
# (2) The bf16 grid at 2k-16k with 3 timing rounds a point, the first with d256 non-causal's
#     ping-pong 64-key blocks above 1k keys; its auto-dispatch cache comes back as
#     $RES/bf16_r3/dispatch/dispatch.json (run17's d128 non-causal 8k forward pick: 1.03x
#     cuDNN against hopper-fa3's 1.17x).
# (3) The fp16 grid the same way, if time is left.
# First (0): the d224 forward cases (-k 224), among them d224 on d256's shipped non-causal
# tile at Sq 1023 / Sk 1031 (test_cuda_forward_every_tile): if it passes, _bf16_tile's
# `padded` rule can go (the padded dims keep that tile at 4k only until then).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s31 560
TAIL=3 step hopper_d224 "$(left 90)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py tests/backends/test_hopper_fa3.py -k 224
repack
NCU_SECONDS=$(left 90) ncu_prof fwd_d128_2k --d 128 --s 2048 --impls hopper-fa3,cudnn
timeout "$(left 90)" ncu --clock-control none --profile-from-start off \
    --kernel-name regex:"fa3_fwd|fprop" --section WarpStateStats --section InstructionStats \
    --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
    python3 benchmarks/ncu_profile.py --d 128 --s 2048 --impls hopper-fa3,cudnn \
    > "$RES/ncu_fwd_stalls_d128_2048.txt" 2>&1
echo "ncu stalls rc=$?"
repack
grid_step bf16_r3 "$(left 250)" bf16 --rounds 3
gpu_clocks
repack
[ "$(left 200)" -ge 150 ] && grid_step fp16_r3 "$(left 200)" fp16 --rounds 3
repack
