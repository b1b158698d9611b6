#!/usr/bin/env bash
# One device call, ready after the thirty-third session (BUDGET seconds in all, default 560;
# $OUT/all.tgz re-packed after every step; carry .whl).
# (00) The hopper GPU suites first: every backward build's source changed after the last
#     device call (five kernel arguments appended, N_KVH, bar_red_or moved).
# (0) BwdTile.tail (the backward's last wave cut along the queries; built and CPU-checked in
#     the thirty-third session, never run): the tolerance cases of the three tail tiles
#     (cuda_bwd_check.py: the default tile's cases, then each tail tile's own, among them
#     three shapes whose last wave is cut on 132 SMs; poisoned outputs, dQ rerun).
# (1) Only if every case passed: interleaved A/B against the shipped tile, cuDNN every
#     round, both orders at d128.  Prediction (a list schedule on 132 SMs, a piece costing
#     its query blocks + 2): +1.5..+2.0 % at d128 / d256 non-causal 2k-16k, +2.6..+2.9 % at
#     d64; under +0.5 % means a piece costs more than modelled.
# The bf16 grid is the next call's (device_s34b.sh).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s34 580
TAIL=3 step hopper_gpu_tests "$(left 230)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_hopper_cuda.py tests/backends/test_hopper_cuda_bwd.py \
    tests/backends/test_hopper_fa3.py tests/backends/test_hopper_split.py tests/test_fp8.py \
    tests/test_first_party_conformance.py tests/test_dispatch.py
repack
TILES=s2-poly1-tail,s2-poly1-alt-tail,s2-atomic-v4-relay-tail
TAIL=8 step tail_cases "$(left 170)" python3 backends/attnhub_hopper/cuda_bwd_check.py \
    --no-grid --tiles "$TILES" --out "$RES/tail_cases"
repack
if grep -qE "correctness: ([0-9]+)/\1 passed" "$RES/tail_cases.txt"; then
    A="python3 benchmarks/ab_hopper.py --out $RES --rounds 10 --seqs 2048,4096,8192,16384"
    TAIL=14 step ab_tail "$(left 150)" $A --name ab_bwd_tail_s34 \
        --pair bwd:128:full:default,s2-poly1-alt-tail --pair bwd:64:full:default,s2-poly1-tail \
        --pair bwd:256:full:default,s2-atomic-v4-relay-tail
    repack
    TAIL=6 step ab_tail_rev "$(left 60)" $A --name ab_bwd_tail_rev_s34 \
        --pair bwd:128:full:s2-poly1-alt-tail,default
    repack
else
    echo "tail cases did not all pass: the A/Bs are skipped" > "$RES/ab_tail.txt"
fi
gpu_clocks
repack
