#!/usr/bin/env bash
# One device call (about 3 minutes; twenty-first session): where the shipped backward
# really sits against cuDNN at the points the grids put near 1.0x (run6: d128 8k 0.95,
# d128 16k causal 0.96, d256 4k 0.96, d256 8k causal 0.99; 1.0-1.07 in other runs).  A
# null A/B: the shipped tile against itself (its B/A says how far two timings of one
# kernel wander in this method), cuDNN in every round, 8 rounds.
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-8} --out $OUT"
TAIL=12 step bwd_place 420 $A --name ab_bwd_place --seqs ${SEQS:-4096,8192,16384} \
    --pair bwd:128:full:default,default --pair bwd:128:causal:default,default \
    --pair bwd:256:full:default,default --pair bwd:256:causal:default,default
pack_out
