#!/usr/bin/env bash
# One device call (about 4 minutes; written in the twenty-fourth session, not yet run):
# Tile.max_tree (each row's block max by a pairwise tree of FMNMX instead of a chain through
# the thread's 16 column pairs) on the shipped tiles.  SASS (nvcc 13.0, sm_90a, d64 causal
# persistent 192-row tile): the chain is 17 dependent FMNMX per row and block, the tree 5;
# 4 fewer FMNMX, the same registers and spills (one tile 96 -> 92 B), no C751x, instruction
# counts equal or 8 fewer.  The maxima are exact and order-free, so outputs are bit-identical.
# Prediction: d64 +1..+4 % (the softmax is the critical path there: the eighteenth session's
# source profile puts 12 % of fixed-latency waits on FMNMX), d128 0..+2 %, d256 about 0.
# Tolerance cases first, then 8-round A/B with cuDNN each round.  Everything in
# $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=4 step cases 200 python3 -c '
from attnhub_hopper.cuda_fwd import default_tile
from attnhub_hopper.cuda_check import tile_cases, report_cases
report_cases(tile_cases([(d, c, default_tile(d, c, s)._replace(max_tree=True))
                         for d in (64, 128, 256) for c in (True, False) for s in (2048, 8192)]),
             "max_tree: tolerance cases")'
grep -Eq "tolerance cases: ([0-9]+)/\1 passed" "$OUT/cases.txt" || { pack_out; exit 1; }  # all of them
A="python3 benchmarks/ab_hopper.py --rounds 8 --out $OUT"
TAIL=24 step ab_tree 300 $A --name ab_max_tree --seqs 2048,4096,8192,16384 \
    --pair fwd:64:causal:default,default-tree --pair fwd:64:full:default,default-tree \
    --pair fwd:128:causal:default,default-tree --pair fwd:128:full:default,default-tree \
    --pair fwd:256:full:default,default-tree
pack_out
