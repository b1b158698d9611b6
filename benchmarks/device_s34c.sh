#!/usr/bin/env bash
# Third call of the thirty-fourth session (BUDGET seconds, default 320; carry .whl).
# (0) triton-fa2's Gluon forward through the backend (tests/backends/test_triton_gluon.py -m gpu:
#     ATTNHUB_TRITON_GLUON=1, the forward spied on, triton-fa2's backward from its O and LSE,
#     the flash-attn tolerance rule; BSHD keeps the other forwards).
# (1) The d256 non-causal backward's new default (BwdTile.tail), and d224 on it: the hopper
#     backward GPU cases at those head dims.
# (2) triton-fa2's forward with the Gluon kernel against without it (ATTNHUB_TRITON_GLUON=1 vs
#     0), interleaved rounds with cuDNN each round, 512-16k keys: where GLUON_MIN_KEYS should
#     be, and the public path's ratio to cuDNN.  Prediction from device_s34b (the kernel
#     alone, 2 rounds): 0.88-0.99x cuDNN at d64, 0.98-1.15x at d128 from 2k.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s34c ${BUDGET:-290}
TAIL=4 step gluon_gpu_tests "$(left 100)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py
repack
TAIL=3 step hopper_bwd_d256 "$(left 70)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda_bwd.py -k "256 or 224" --durations=3
repack
TAIL=24 step ab_gluon "$(left 130)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 3 \
    --name ab_tri_gluon_s34 --seqs 512,1024,2048,4096,8192,16384 \
    --pair tri:64:full:nogluon,gluon --pair tri:64:causal:nogluon,gluon \
    --pair tri:128:full:nogluon,gluon --pair tri:128:causal:nogluon,gluon
gpu_clocks
repack
