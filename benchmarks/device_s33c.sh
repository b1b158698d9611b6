#!/usr/bin/env bash
# Third call of the thirty-third session (BUDGET seconds, default 480; carry .whl).
# Every FA-grid point (S 2k-16k, d64/128/256, causal and not, forward and backward) placed in
# interleaved rounds: the shipped hopper-fa3 tile twice (A and B, both "default") with cuDNN
# timed in every round; A x cuDNN and B x cuDNN are two placements of the point that share
# each round's clocks with their peer (a grid reading moves +-4-7 % run to run).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s33c 480
A="python3 benchmarks/ab_hopper.py --out $RES --rounds ${ROUNDS:-8} --seqs 2048,4096,8192,16384"
P=""
for d in 64 128 256; do for m in causal full; do P="$P --pair fwd:$d:$m:default,default"; done; done
TAIL=30 step place_fwd "$(left 230)" $A --name place_fwd_s33 $P
repack
P=""
for d in 64 128 256; do for m in causal full; do P="$P --pair bwd:$d:$m:default,default"; done; done
TAIL=30 step place_bwd "$(left 230)" $A --name place_bwd_s33 $P
gpu_clocks
repack
