#!/usr/bin/env bash
# First call of the thirty-fifth session (BUDGET seconds, default 510; carry .whl).
# (0)-(2) are device_s34c.sh, which never ran: the Gluon route through the backend (GPU tests,
#     triton-fa2's backward from its O/LSE), the d256/d224 backward on BwdTile.tail, and the
#     route's A/B against the plain-Triton forward at 512-16k (sets GLUON_MIN_KEYS).
# (3) The Gluon kernel's knobs at d64/d128 (GLUON_NOTES "Next" 2): block_n 64, 3 stages, both,
#     and ws2 with 3 stages, against pp as shipped, cuDNN/FLASH interleaved, 2 rounds.
#     Prediction: block_n 64 loses at d128 (more barriers per FLOP), maybe +2-4 % at d64.
# (4) d256 (GLUON_NOTES "Next" 3): pp/ws2/simple at block_n 64, 2 stages, timed for the first
#     time; the plain-Triton forward read 0.67-0.83x cuDNN there (grid run20).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s35 ${BUDGET:-510}
TAIL=4 step gluon_gpu_tests "$(left 100)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py
repack
TAIL=3 step hopper_bwd_d256 "$(left 70)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda_bwd.py -k "256 or 224" --durations=3
repack
TAIL=24 step ab_gluon "$(left 130)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 3 \
    --name ab_tri_gluon_s35 --seqs 512,1024,2048,4096,8192,16384 \
    --pair tri:64:full:nogluon,gluon --pair tri:64:causal:nogluon,gluon \
    --pair tri:128:full:nogluon,gluon --pair tri:128:causal:nogluon,gluon
repack
TAIL=40 step gluon_knobs "$(left 130)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_knobs" --timeout 90 --bench-timeout 110 --rounds 2 --cases quick \
    --variants pp,pp:block_n=64,pp:stages=3,pp:block_n=64:stages=3,ws2:stages=3
repack
TAIL=20 step gluon_d256 "$(left 80)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_d256" --timeout 60 --bench-timeout 60 --rounds 2 --cases all \
    --variants pp,ws2,simple \
    --points 2048x256,4096x256,8192x256,16384x256,2048x256c,4096x256c,8192x256c,16384x256c
gpu_clocks
repack
