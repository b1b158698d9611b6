#!/usr/bin/env bash
# The fortieth session's first call (BUDGET seconds, default 560; carry .whl, which now holds
# pytest-xdist and execnet too).
# (1) S_AHEAD narrowed down (GLUON_BWD_NOTES "Fortieth session"): the "ahead" cases (one head,
#     one CTA, n_iter 1-4, then larger) for m64 (control), m64a, m64a2, m64ao and the
#     diagnostic placement ahead_chunk=-1 (next products retired before the turn: no wgmma in
#     the turn's if-arms but dQ's).  Reading: -1 right while m64a wrong -> the if-arm wgmma
#     codegen; n_iter=1 wrong -> not the steady state.
# (2) Nsight Compute of triton-fa2's forward (pp-dynamic since s39) against cuDNN at d64 4k,
#     non-causal and causal: the missing profile for the d64 target (GLUON_NOTES "Next" 1).
# (3) the Gluon backward's dq_cols (m64co: each warpgroup adds its column half of dQ every
#     block, fa3_bwd.cu's d128 split) against m64o (whole dQ every other block): quick cases
#     and d128 points, 2 rounds.  Prediction: -3..+6 % (no spills either way; HGMMA 64 vs
#     80 static, the same work per block).
# (4) triton-fa2's GPU tests with the s39 defaults (m64o d128, h64 d256, pp-dynamic), 8
#     workers (pytest-xdist): the full suite never finished inside one step before.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s40 ${BUDGET:-560}
TAIL=40 step gluon_bwd_ahead "$(left 110)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd_ahead" --cases ahead --no-bench --timeout 90 --jobs 6 \
    --variants m64,m64a,m64a:ahead_chunk=-1,m64a2,m64a2:ahead_chunk=-1,m64ao
repack
NCU_SECONDS=$(left 80) ncu_prof fwd_d64_4k --d 64 --s 4096 --impls triton-fa2,cudnn
repack
NCU_SECONDS=$(left 80) ncu_prof fwd_d64_4k_causal --d 64 --s 4096 --causal --impls triton-fa2,cudnn
repack
TAIL=40 step gluon_bwd_cols "$(left 140)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd_cols" --cases quick --rounds 2 --timeout 100 --bench-timeout 120 \
    --jobs 2 --variants m64o,m64co --bench-anyway \
    --points 2048x128,4096x128,16384x128,2048x128c,4096x128c,16384x128c
repack
TAIL=12 step triton_gpu_tests "$(left 200)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    -n 8 --durations=5 tests/backends/test_triton_fa2.py tests/backends/test_triton_gluon.py \
    tests/backends/test_triton_gluon_bwd_hsplit.py tests/backends/test_triton_gluon_bwd_vec.py \
    tests/test_first_party_conformance.py
repack
gpu_clocks
repack
