#!/usr/bin/env bash
# One device call (twenty-seventh session, on the time left after device_s26.sh): checks and
# times the d128 non-causal 8k forward after its move to ping-pong 128-key blocks
# (+2.2 / +2.9 % in two interleaved A/Bs), and tries d256 non-causal 4k's neighbours
# (1.015 / 1.017x cuDNN in both of device_s26's grids, 1.14 in run9).  (1) the CUDA forward's
# tolerance cases; (2) d256 non-causal 4k: n80s2 against n64s2-pp, n80s2-pp, n80s2-c2, 8
# interleaved rounds with cuDNN, prediction 0..+3 %; (3) the bf16 grid, 2k-16k, --rounds 3.
# BUDGET seconds in all; $OUT/all.tgz re-packed after each step.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s27 480
TAIL=6 step ab_d256_4k "$(left 70)" python3 benchmarks/ab_hopper.py --rounds 8 --out "$RES" \
    --name ab_d256_full_4k --seqs 4096 --pair fwd:256:full:default,n64s2-pp-lazy-tree \
    --pair fwd:256:full:default,n80s2-pp-lazy-tree --pair fwd:256:full:default,n80s2-c2-lazy-tree
repack
TAIL=4 step gpu_fwd_tests "$(left 100)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py -k "forward_tolerance or every_tile"
repack
TAIL=4 grid_step rounds3 "$(left 260)" bf16 --rounds 3
gpu_clocks
repack
