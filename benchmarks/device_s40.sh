#!/usr/bin/env bash
# Ready for the next session's first call (written in the fortieth, which got no device
# machine; BUDGET seconds, default 560, 575 fits one call; carry .whl, which now holds
# pytest-xdist and execnet too).
# Steps in this order: (3), (4), (1), (2) -- the ones that can ship something first.
# (1) S_AHEAD narrowed down (GLUON_BWD_NOTES "Fortieth session"): the "ahead" cases (one head,
#     one CTA, n_iter 1-4, then larger) for m64 (control), m64a, m64a2, m64ao and the
#     diagnostic placements ahead_chunk=-1 (next products issued and retired before the
#     turn) and -2 (issued before the turn's branch, retired inside each arm: the overlap
#     kept, no wgmma issued inside an arm but dQ's); those that pass are timed at d64 (2
#     rounds, 4 points).  Reading: -1/-2 right while m64a wrong -> the wgmma issued inside
#     the if-arm is the fault (and -2 is the S_AHEAD to time); n_iter=1 wrong -> not the
#     steady state.  Prediction for -2 if right: m64a's, +0..+4 % at d64.
# (2) Nsight Compute of triton-fa2's forward (pp-dynamic since s39) against cuDNN at d64 4k
#     non-causal (0.98x there in s39): the missing profile for the d64 target (GLUON_NOTES
#     "Next" 1).
# (3) the Gluon backward's dQ variants (GLUON_BWD_NOTES "Fortieth session"), quick cases and
#     d128 / d256 points, 2 rounds: m64co (each warpgroup adds its column half of dQ every
#     block, fa3_bwd.cu's d128 split) and m64o1 (the turn's dQ as one 64x128 product) against
#     m64o; h64w (each warpgroup's dQ half as one product, issued with dV and dK) and h64r /
#     h64rw (the role split: warpgroup 0 the whole Sᵀ and P, warpgroup 1 the whole dPᵀ and
#     dS, N = 64 products, fa3_bwd.cu's d256 layout) against h64.  Predictions (÷ the shipped
#     one): m64co -3..+6 %, m64o1 -2..+4 %, h64w +1..+5 %, h64r -5..+15 % (wide: +15 if
#     h64's Sᵀ/dPᵀ phase is bound by shared-memory reads, -5 from the exposed P hand-off);
#     at d64, m128ro (128-query blocks, each warpgroup adds dQ of its 64 rows every block:
#     fa3_bwd.cu's d64 split) against m64: -3..+6 % non-causal (0 spills), causal spills
#     112 B.
# (4) triton-fa2's GPU tests with the s39 defaults (m64o d128, h64 d256, pp-dynamic), 8
#     workers (pytest-xdist): the full suite never finished inside one step before.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s40 ${BUDGET:-560}
TAIL=60 step gluon_bwd_dq "$(left 180)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd_dq" --cases quick --rounds 2 --timeout 110 --bench-timeout 150 \
    --jobs 9 --variants m64,m128ro,m64o,m64co,m64o1,h64,h64w,h64r,h64rw --bench-anyway \
    --points 2048x64,8192x64c,2048x128,8192x128,2048x128c,8192x128c,2048x256,8192x256,2048x256c,8192x256c
repack
TAIL=12 step triton_gpu_tests "$(left 140)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    -n 8 --durations=5 tests/backends/test_triton_fa2.py tests/backends/test_triton_gluon.py \
    tests/backends/test_triton_gluon_bwd_hsplit.py tests/backends/test_triton_gluon_bwd_vec.py \
    tests/test_first_party_conformance.py
repack
TAIL=48 step gluon_bwd_ahead "$(left 170)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd_ahead" --cases ahead --rounds 2 --timeout 100 --bench-timeout 60 \
    --jobs 8 --bench-anyway --points 2048x64,8192x64,2048x64c,8192x64c \
    --variants m64,m64a,m64a:ahead_chunk=-1,m64a:ahead_chunk=-2,m64a2,m64a2:ahead_chunk=-1,m64a2:ahead_chunk=-2,m64ao
repack
NCU_SECONDS=$(left 75) ncu_prof fwd_d64_4k --d 64 --s 4096 --impls triton-fa2,cudnn
repack
gpu_clocks
repack
