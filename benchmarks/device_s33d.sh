#!/usr/bin/env bash
# Fourth call of the thirty-third session (BUDGET seconds, default 430; carry .whl).
# Auto-dispatch's picks against a reference ranking (benchmarks/dispatch_picks.py): the close
# call (ATTNHUB_DISPATCH_CLOSE=1.10, candidates within 10 % of the fastest timed again in 5
# interleaved rounds) against one-after-another alone (=1), alternating, at d128 / d256
# (where run20's picks away from hopper-fa3 were) 2k / 8k / 16k, causal and not, forward and
# forward + backward.  Prediction: fewer picks over 3 % from the fastest with the close call.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s33d 430
TAIL=60 step picks "$(left 410)" python3 benchmarks/dispatch_picks.py --out "$RES" \
    --name dispatch_picks_s33 --head-dims 128 256 --seqs 2048 8192 16384 --picks 2 --rounds 6
gpu_clocks
repack
