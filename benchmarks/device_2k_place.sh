#!/usr/bin/env bash
# One short device call, written in the twenty-first session, run in the twenty-second
# (ab_2k_place_h100_2026-12-06: forward 1.01-1.04x cuDNN, backward d128 1.01-1.04x): the 2k points
# the grids keep under 1.05x cuDNN (forward d64 causal 0.99-1.02, d128 1.02-1.04 causal or
# not; backward d128 0.99), each shipped kernel against itself with cuDNN in every round,
# 8 interleaved rounds, as ab_bwd_place did for the backward from 4k.
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-8} --out $OUT"
TAIL=12 step place_2k 100 $A --name ab_2k_place --seqs 2048 \
    --pair fwd:64:causal:default,default --pair fwd:128:full:default,default \
    --pair fwd:128:causal:default,default --pair bwd:128:full:default,default
pack_out
