#!/usr/bin/env bash
# One device call (about 3 minutes; twenty-third session): Tile.poly (part of the softmax's
# exp2 on the FMA pipe, FA4) on the shipped d64 192-row tiles.  Poly lost everywhere in the
# fifth session (-3..-15 %, the FMA/ALU pipes were the busier ones), before ones_sum (row sums
# on the tensor cores) and lazy (rare rescales) took FMA/ALU work off the consumers.  At d64
# the exp2 count per S element equals the MMA time exactly (1/16 clock per element on MUFU at
# 16/clk/SM, 256 flops at 4096/clk/SM), so MUFU is a co-bottleneck there and only there.
# Prediction: poly1 -2..+3 % (the issue slots are the next limit), poly2 a loss.
# Tolerance cases first (compiled locally: 128 registers under the 512-thread bound, 68-120 B
# spill like the shipped tile's 76), then 8-round A/B with cuDNN each round.
# Everything in $OUT/all.tgz.  Carry .whl.
# Ran once (twenty-third session): 60/60 cases, poly1 -4..-9 %, poly2 -13..-15 %
# (ab_poly_d64_h100_2026-12-06); nothing shipped.
set -u
source benchmarks/device_setup.sh
TAIL=4 step cases 200 python3 -c '
from attnhub_hopper.cuda_fwd import default_tile
from attnhub_hopper.cuda_check import tile_cases, report_cases
report_cases(tile_cases([(64, c, default_tile(64, c, 2048)._replace(poly=p))
                         for c in (True, False) for p in (1, 2)]), "d64 poly: tolerance cases")'
grep -Eq "tolerance cases: ([0-9]+)/\1 passed" "$OUT/cases.txt" || { pack_out; exit 1; }  # all of them
A="python3 benchmarks/ab_hopper.py --rounds 8 --out $OUT"
TAIL=10 step ab_poly 200 $A --name ab_poly_d64 --seqs 2048,8192 \
    --pair fwd:64:causal:default,default-poly1 --pair fwd:64:full:default,default-poly1 \
    --pair fwd:64:causal:default,default-poly2
pack_out
