#!/usr/bin/env bash
# One device call, ready after the twenty-ninth session (BUDGET seconds in all, default
# 560; $OUT/all.tgz re-packed after every step; carry .whl).
# (1) The whole hopper-fa3 GPU suite on the current tree (last full run: the twenty-eighth
#     session's starting tree, 716 passed in 127 s; Tile.halves at d64 causal up to 1024
#     keys shipped since, its tile passed test_cuda_forward_mask_halves then).
# (2) d64 causal 2k placed again (12 rounds; 1.027 / 1.030x cuDNN in the twenty-ninth).
# (3) The bf16 grid at 2k-16k with 3 timing rounds a point (one timing reads a ratio to
#     about +-3-4 %; run15 / run16 disagreed at 8k-16k); it writes <stem>.partial.json after
#     every point, so a cut run still brings back what it measured.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s30 560
TAIL=3 step hopper_gpu_tests "$(left 200)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_hopper_cuda.py tests/backends/test_hopper_cuda_bwd.py \
    tests/backends/test_hopper_fa3.py tests/test_fp8.py tests/test_first_party_conformance.py \
    tests/test_dispatch.py
repack
TAIL=4 step ab_place_2k "$(left 60)" python3 benchmarks/ab_hopper.py --out $RES --rounds 12 \
    --name ab_place_2k --seqs 2048 --pair fwd:64:causal:default,default
repack
grid_step bf16_r3 "$(left 280)" bf16 --rounds 3
gpu_clocks
repack
