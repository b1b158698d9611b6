#!/usr/bin/env bash
# Second call of the thirty-sixth session (BUDGET seconds, default 400; carry .whl): hopper-fa3's
# backward tail builds with the division-free block index (TAIL_LINEAR, NOTES.md "Thirty-sixth
# session"): their cases, then the A/B against the shipped tiles with the cut off (the build's
# own cost: predicted 0.99-1.03, was 0.94-0.96 at d64 and 0.97-1.00 at d128) and on (+1..+4 %),
# and the failing BSHD Gluon test verbose.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s36b ${BUDGET:-400}
TAIL=6 step tail_cases "$(left 90)" python3 backends/attnhub_hopper/cuda_bwd_check.py --no-grid \
    --tiles s2-poly1-tail,s2-poly1-alt-tail --out "$RES/tail_cases_s36"
repack
TAIL=30 step bshd_test "$(left 40)" python3 -m pytest -q -m gpu -p no:cacheprovider -x \
    tests/backends/test_triton_gluon.py -k "bshd"
repack
NOCUT="import sys, runpy, attnhub_hopper.cuda_bwd as c; c.TAIL_WS_BYTES = 0; \
sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
if grep -q "FAIL" "$RES/tail_cases.txt"; then echo "tail cases failed: no A/B"; else
TAIL=10 step ab_tail_nocut "$(left 120)" python3 -c "$NOCUT" benchmarks/ab_hopper.py \
    --out "$RES" --rounds 6 --seqs 2048,4096,8192,16384 --name ab_bwd_tail_nocut_s36 \
    --pair bwd:64:full:default,s2-poly1-tail --pair bwd:128:full:default,s2-poly1-alt-tail
repack
TAIL=10 step ab_tail "$(left 120)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 6 \
    --seqs 2048,4096,8192,16384 --name ab_bwd_tail_s36 \
    --pair bwd:64:full:default,s2-poly1-tail --pair bwd:128:full:default,s2-poly1-alt-tail
fi
gpu_clocks
repack
