#!/usr/bin/env bash
# One device call, ready after the twenty-seventh session (about 9.5 minutes, BUDGET seconds in
# all, default 560; $OUT/all.tgz re-packed after every step, so a short call keeps what
# finished).  Carry .whl.
# (0) Tile.halves (built in the twenty-seventh session, CPU-checked: the causal mask tests only
#     the 64 columns a warpgroup's diagonal crosses; 1.9-2.6 % fewer consumer instructions
#     counted at d64 causal 2k, prediction +1..+2.5 % there, +0.5..+1.5 % at 4k and at d128
#     causal 2k): its GPU cases, then, if they pass, 8 interleaved rounds against the shipped
#     tiles at d64 causal 2k / 4k and d128 causal 2k.
# Then, in this order (the budget cuts the last first): (3), (2), (1), (4).
# (1) d256 non-causal 4k: n64s2-pp against the shipped n80s2, 12 interleaved rounds (+2.1 %
#     in one 8-round run, inside the ranges; ship only if it holds); the fp16 backward at
#     d256 non-causal 2k (0.995x cuDNN in fp16 run5, never placed) in 8 rounds, A/A.
# (2) the fp16 grid at 2k-16k, one timing: the first fp16 reading since d128 non-causal 8k
#     moved to ping-pong 128-key blocks.
# (3) hopper-fa3's whole GPU suite (forward, backward, FP8, conformance, dispatch) on the
#     current tree (the twenty-seventh session re-ran the forward's cases only: 190 passed).
# (4) the bf16 grid at 2k-16k, one timing, for one more reading of every point.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s28 560
A="python3 benchmarks/ab_hopper.py --out $RES"
TAIL=3 step halves_gpu_tests "$(left 120)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py -k "test_cuda_forward_mask_halves"
H="$RES/halves_gpu_tests.txt"
if grep -q " passed" "$H" && ! grep -qE "failed|error" "$H"; then
    TAIL=6 step ab_halves "$(left 60)" $A --rounds 8 --name ab_halves --seqs 2048,4096 \
        --pair fwd:64:causal:default,default-halves --pair fwd:128:causal:default,default-halves
fi
repack
TAIL=3 step hopper_gpu_tests "$(left 200)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_hopper_cuda.py tests/backends/test_hopper_cuda_bwd.py \
    tests/backends/test_hopper_fa3.py tests/test_fp8.py tests/test_first_party_conformance.py \
    tests/test_dispatch.py
repack
grid_step fp16 "$(left 70)" fp16
repack
TAIL=4 step ab_d256_4k "$(left 50)" $A --rounds 12 --name ab_d256_full_4k_confirm --seqs 4096 \
    --pair fwd:256:full:default,n64s2-pp-lazy-tree
TAIL=4 step ab_fp16_bwd_d256 "$(left 40)" $A --rounds 8 --dtype fp16 \
    --name ab_fp16_bwd_d256_2k --seqs 2048 --pair bwd:256:full:default,default
repack
grid_step bf16 "$(left 70)" bf16
gpu_clocks
repack
