#!/usr/bin/env bash
# One device call (about 3 minutes), written in the twenty-first session and NOT YET RUN:
# Tile.skip = 2 (DEAD_SKIP=2), a causal warpgroup whose rows see none of the tile's first
# key block skips that block's mask and exps as well as its S product (P = 0 directly).
# Built and compile-checked on the CPU: no spill added (the persistent 192-row tile 76 -> 68
# bytes), no C751x; skip = 1 (shipped) builds byte-identical to the measured kernel.
# Why it may pay where skip = 1 did not (+0.7 % at d64 causal 2k): at d64 a block's 64 x 128
# exps cost the MUFU unit about 512 cycles against about 256 for its S product on the
# tensor cores, and the dead block is about 4 % of a 2k causal tile's blocks (8.5 blocks an
# average tile, three warpgroups, one dead).  Prediction: d64 causal 2k +1..+3 % over skip
# = 1, 4k half that; d128 none (no dead blocks on the FA grid); d256/d192 2k +0.5..+1 %.
# Tolerance cases of every shipped causal tile with skip = 2, then interleaved A/B.
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=12 step skip2_cases 240 python3 -c '
from attnhub_hopper import cuda_fwd
from attnhub_hopper.cuda_check import causal_tile_cases, report_cases
tiles = sorted({(D, t._replace(skip=2)) for D, c, t in cuda_fwd.shipped_tiles() if c}, key=str)
report_cases(causal_tile_cases(tiles), "skip2: causal tolerance cases")'
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
TAIL=12 step skip2_ab 200 $A --name ab_skip2 --seqs ${SEQS:-2048,4096,8192} \
    --pair fwd:64:causal:default,default-skip2 --pair fwd:256:causal:default,default-skip2 \
    --pair fwd:192:causal:default,default-skip2
pack_out
