#!/usr/bin/env bash
# Second call of the thirty-fourth session (BUDGET seconds, default 300; carry .whl).
# The Gluon check (2) runs first: it is the new information.
# (0) d256 non-causal backward, BwdTile.tail timed FIRST in each round (s34's first call had
#     it second: +2..+3 % at 2k/4k/16k, flat at 8k); 10 rounds, cuDNN each round.
# (1) Why d64 lost 2-4 % and d128 was flat: the tail builds with the cut switched off
#     (cuda_bwd.TAIL_WS_BYTES = 0 makes tail_plan return every block whole, so the 1-D grid
#     and the tail code are there but no block is cut) against the shipped tiles.  If this
#     loses what the cut lost, the build costs it, not the pieces.
# (2) The Gluon forward prototype for triton-fa2 on sm90 (backends/attnhub_triton/
#     _gluon_fwd.py, GLUON_NOTES.md; compiled offline with Triton 3.6, never run): its
#     cases per variant (a child process each, so a deadlock costs one child's timeout),
#     then the FA grid's forward points at d64/d128 against SDPA cuDNN and FLASH, the
#     variants whose cases all passed.  Prediction (helper's guess): simple 0.70-0.80x,
#     pp 0.90-1.0x cuDNN at d128 8k-16k.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s34b ${BUDGET:-520}
TAIL=40 step gluon "$(left 330)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon" --timeout 140 --bench-timeout 170 --rounds 2 --bench-anyway
repack
A="python3 benchmarks/ab_hopper.py --out $RES --rounds 10 --seqs 2048,4096,8192,16384"
TAIL=6 step ab_tail_d256_rev "$(left 70)" $A --name ab_bwd_tail_d256_rev_s34 \
    --pair bwd:256:full:s2-atomic-v4-relay-tail,default
repack
NOCUT="import sys, runpy, attnhub_hopper.cuda_bwd as c; c.TAIL_WS_BYTES = 0; \
sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
TAIL=10 step ab_tail_nocut "$(left 110)" python3 -c "$NOCUT" benchmarks/ab_hopper.py \
    --out "$RES" --rounds 6 --seqs 2048,4096,8192,16384 --name ab_bwd_tail_nocut_s34 \
    --pair bwd:64:full:default,s2-poly1-tail --pair bwd:128:full:default,s2-poly1-alt-tail
repack
gpu_clocks
repack
