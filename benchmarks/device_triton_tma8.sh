#!/usr/bin/env bash
# One device call (about 3 minutes; written in the twenty-fourth session, not yet run):
# triton-fa2's d64 general forward on TMA at 128x64, 8 warps, 3 stages ("tma8": 107-127
# registers under Triton 3.6, two programs per SM) against what ships: the pointer-load route
# (242 / 229 registers, one program per SM) up to 4096 keys, the lean kernel from 8k.
# 8 interleaved rounds, cuDNN each round.  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
A="python3 benchmarks/ab_hopper.py --rounds 8 --out $OUT"
TAIL=10 step ab_tma8_short 150 $A --name ab_tri_tma8_short --seqs 512,1024,2048,4096 \
    --pair tri:64:causal:default,tma8 --pair tri:64:full:default,tma8
TAIL=6 step ab_tma8_long 120 $A --name ab_tri_tma8_long --seqs 8192,16384 \
    --pair tri:64:causal:default,tma8 --pair tri:64:full:default,tma8
pack_out
