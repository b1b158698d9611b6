#!/usr/bin/env bash
# One device call, ready after the twenty-eighth session (BUDGET seconds in all, default
# 540; $OUT/all.tgz re-packed after every step; carry .whl).
# (1) triton-fa2's GPU cases in three shards (no triton-fa2 code changed since they last
#     passed, 89 of 89, in the twenty-fifth session; the twenty-eighth's one try was cut at
#     37 passed by its own cap, most of a shard's time is compiling); 85 of the 89: the
#     four every-autotuning-candidate cases (about 85 s a pair) are left out.
# (2) Tile.halves at 1k keys (8 interleaved rounds, cuDNN each round; shipped at d64 causal
#     1025-2048 only): d64 causal 1k (the 128-row persistent ping-pong tile) and d128 causal
#     1k; prediction 0..+2 % (a larger share of masked blocks than at 2k, but 1k is
#     host- and launch-heavy).
# (3) the bf16 grid at 2k-16k, one timing.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s29 540
T="python3 -m pytest -q -m gpu -p no:cacheprovider --durations=3"
TAIL=3 step triton_d128 "$(left 110)" $T tests/backends/test_triton_fa2.py -k "d128 and not every"
TAIL=3 step triton_d32_d96 "$(left 120)" $T tests/backends/test_triton_fa2.py \
    -k "(d32 or d40 or d72 or d96) and not every"
TAIL=3 step triton_rest "$(left 120)" $T tests/backends/test_triton_fa2.py \
    -k "(d160 or d192 or d256 or d64 or compile or graph or pointer) and not every"
repack
TAIL=6 step ab_halves_1k "$(left 40)" python3 benchmarks/ab_hopper.py --out $RES --rounds 8 \
    --name ab_halves_1k --seqs 1024 \
    --pair fwd:64:causal:default,default-halves --pair fwd:128:causal:default,default-halves
repack
grid_step bf16 "$(left 150)" bf16
gpu_clocks
repack
