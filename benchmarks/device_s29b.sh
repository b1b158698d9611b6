#!/usr/bin/env bash
# Second device call of the twenty-ninth session (BUDGET seconds, default 400; carry .whl).
# (1) Tile.halves at 1k keys, confirmation: the first call read B/A 1.013 (d64 causal 1k)
#     and 1.007 (d128 causal 1k) in 8 rounds; 12 rounds with an A/A of the shipped tile.
# (2) the bf16 grid at 2k-16k, one timing; the first call's 150 s cap cut it before it
#     wrote anything, so this one gets up to 330 s.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s29b 400
TAIL=8 step ab_halves_1k_confirm "$(left 60)" python3 benchmarks/ab_hopper.py --out $RES \
    --rounds 12 --name ab_halves_1k_confirm --seqs 1024 \
    --pair fwd:64:causal:default,default-halves --pair fwd:64:causal:default,default \
    --pair fwd:128:causal:default,default-halves
repack
grid_step bf16 "$(left 330)" bf16
gpu_clocks
repack
