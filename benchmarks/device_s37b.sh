#!/usr/bin/env bash
# Thirty-seventh session (BUDGET seconds, default 420; carry .whl).
# (0) the Gluon backward's new builds (GLUON_BWD_NOTES "Thirty-seventh session"): h64 (HSPLIT,
#     64-key CTAs, the warpgroups split the query block and the head dim: the first Gluon
#     backward at d256, also d128), m64o (m64 with K / V descriptors rebuilt per iteration: no
#     spill at d128), and the S_AHEAD builds m64a / m64a2 beside the shipped m64: quick cases
#     (d64, d128, d256), then the grid's backward points against cuDNN / FLASH, 2 rounds.
#     Predictions (the kernel alone, xcuDNN): h64 d256 0.60-0.80 (plain Triton 0.52-0.57);
#     h64 d128 0.70-0.85 (m64 0.76-0.87); m64o d128 +0..+4 % over m64; m64ao d128 +0..+5 %.
# (1) the Gluon backward's GPU tests through the backend (d256 cases new).
# (2) through the backend: Gluon ÷ plain-Triton backward at d256 (ab_hopper trib gluon_bwd).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s37b ${BUDGET:-420}
TAIL=40 step gluon_bwd_h64 "$(left 260)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd_h64" --cases quick --rounds 2 --timeout 150 --bench-timeout 200 \
    --variants ${VARIANTS:-m64,m64o,m64a,m64ao,h64} --bench-anyway \
    --points ${POINTS:-2048x256,4096x256,8192x256,16384x256,2048x256c,4096x256c,8192x256c,16384x256c,2048x128,4096x128,8192x128,16384x128,2048x128c,4096x128c,8192x128c,16384x128c,4096x64,16384x64,4096x64c,16384x64c}
repack
TAIL=6 step gpu_tests_gluon_bwd "$(left 100)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py -k "gluon_backward"
repack
TAIL=14 step ab_d256_bwd "$(left 90)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 2 \
    --name ab_trib_gluon_d256_s37 --seqs 1024,2048,4096,8192,16384 \
    --pair trib:256:full:default,gluon_bwd --pair trib:256:causal:default,gluon_bwd
repack
gpu_clocks
repack
