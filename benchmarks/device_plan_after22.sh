#!/usr/bin/env bash
# One device call (about 3 minutes), written in the twenty-second session and NOT YET RUN:
# items 1-3 of hopper NOTES.md "Plan for the next device session (after the twenty-second)".
#  - d128 causal 4k on the persistent kernel, longest-first, with and without ping-pong
#    (+2.9 / +3.5 % in ab_d128c_persistent_h100_2026-12-06; its 2k twin was +7 %, shipped);
#  - d64 causal 2k-4k without ping-pong: the 192-row persistent tile and the 128-row one
#    (ping-pong has not been re-measured at short causal tiles since the persistent kernel
#    and lpt came; at d128 causal 2k the two were within noise of each other);
#  - d256 non-causal placed: the shipped kernel against itself with cuDNN in every round
#    (1.04-1.05x in fa_grid_fwd_..._run4, 1.07-1.23x in the two grids before).
# Tolerance cases of the two new d64 tiles first (the d128 ones passed 30/30 this session).
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=4 step cases 150 python3 -c '
from attnhub_hopper.cuda_fwd import Tile
from attnhub_hopper.cuda_check import tile_cases, report_cases
tiles = [Tile(128, 2, False, persistent=True, lpt=True, lazy=True),
         Tile(128, 2, False, persistent=True, lpt=True, consumers=3, ones_sum=True, lazy=True)]
report_cases(tile_cases([(64, True, t) for t in tiles]), "d64 causal persistent no-pp: tolerance cases")'
grep -Eq "tolerance cases: ([0-9]+)/\1 passed" "$OUT/cases.txt" || { pack_out; exit 1; }  # all of them
A="python3 benchmarks/ab_hopper.py --rounds 8 --out $OUT"
TAIL=6 step ab_d128c_4k 100 $A --name ab_d128c_4k --seqs 4096 \
    --pair fwd:128:causal:default,n128s2-pp-persistent-lpt-lazy \
    --pair fwd:128:causal:default,n128s2-pp-persistent-lpt-lazy-nopp
TAIL=6 step ab_d64c_nopp 120 $A --name ab_d64c_nopp --seqs 2048,4096 \
    --pair fwd:64:causal:default,default-nopp \
    --pair fwd:64:causal:default,n128s2-pp-persistent-lpt-lazy-nopp
TAIL=6 step place_d256 120 $A --name ab_d256_place --seqs 2048,8192,16384 \
    --pair fwd:256:full:default,default
pack_out
