#!/usr/bin/env bash
# One device call (about 2 minutes; nineteenth session): the grid's outliers after the
# P·V wait moved and Tile.lazy shipped, in interleaved rounds with cuDNN each round:
# bf16 d256 causal 1k (hopper-fa3 189 TFLOP/s in the bf16 grid, 422 in the fp16 one),
# d256 non-causal 16k (831 bf16, 677 fp16), and d64 causal 2k (0.95x cuDNN), each
# against the same tile without lazy.  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
TAIL=12 step outliers 200 bash -c "$A --name ab_outliers_1k --seqs 1024 \
    --pair fwd:256:causal:default-eager,default --pair fwd:128:causal:default-eager,default \
    && $A --name ab_outliers_16k --seqs 16384 --pair fwd:256:full:default-eager,default \
    && $A --name ab_outliers_2k --seqs 2048 --pair fwd:64:causal:default-eager,default"
pack_out
