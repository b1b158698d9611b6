#!/usr/bin/env bash
# The twenty-eighth session's second call (BUDGET seconds, default 540; carry .whl), after
# two forward tiles shipped from device_s28.sh's A/Bs: Tile.halves at d64 causal up to 2k
# keys (+1.7 % in 8 rounds, +0.7 % in 12), and ping-pong 64-key blocks at d256 non-causal
# 4k (+2.1 % in 8 rounds, +2.5 % in 12).
# (1) the forward's GPU cases (every shipped tile, tolerance, defaults), conformance and
#     dispatch, on the new defaults;
# (2) 12 interleaved rounds each, the old default (A) against the new (B): prediction
#     +0.5..+1.5 % at d64 causal 2k, +1.5..+2.5 % at d256 non-causal 4k;
# (3) the bf16 grid at 2k-16k, one timing; (4) the fp16 grid, one timing (the budget cuts
#     the last first; grids compile on their first point, so each gets 170 s).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s28b 540
TAIL=3 step fwd_gpu_tests "$(left 170)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_hopper_cuda.py tests/test_first_party_conformance.py \
    tests/test_dispatch.py
repack
TAIL=4 step ab_new_defaults "$(left 60)" python3 benchmarks/ab_hopper.py --out $RES \
    --rounds 12 --name ab_s28_new_defaults --seqs 2048 \
    --pair fwd:64:causal:default-whole,default
TAIL=4 step ab_new_defaults_d256 "$(left 40)" python3 benchmarks/ab_hopper.py --out $RES \
    --rounds 12 --name ab_s28_new_defaults_d256 --seqs 4096 \
    --pair fwd:256:full:n80s2-lazy-tree,default
repack
grid_step bf16 "$(left 170)" bf16
repack
grid_step fp16 "$(left 170)" fp16
gpu_clocks
repack
