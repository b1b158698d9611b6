#!/usr/bin/env bash
# Third device call of the twenty-ninth session (BUDGET seconds, default 130; carry .whl):
# place the points that read under target in one of run15 / run16 (bf16, one timing each)
# in interleaved rounds, the shipped tile against itself with cuDNN timed each round
# (d64 causal 2k, d128 causal and non-causal 16k; cut to fit 389 s of device time left).
set -u
source benchmarks/device_setup.sh
budgeted s29e 130
A=default,default
TAIL=4 step ab_place_2k "$(left 70)" python3 benchmarks/ab_hopper.py --out $RES --rounds 12 \
    --name ab_place_2k --seqs 2048 --pair fwd:64:causal:$A
repack
TAIL=6 step ab_place_16k "$(left 70)" python3 benchmarks/ab_hopper.py --out $RES --rounds 8 \
    --name ab_place_16k --seqs 16384 --pair fwd:128:causal:$A --pair fwd:128:full:$A
repack
