#!/usr/bin/env bash
# One call (BUDGET seconds, default 560; carry .whl) for a session that may get a single
# device call; it replaces the thirty-eighth session's one-call script.
# (1) the Gluon forward: pp-dynamic and the thirty-ninth session's softmax knobs beside pp
#     (GLUON_NOTES "Thirty-ninth session"): max_tree=1 (the row max as a 4-deep tree, not a
#     31-deep FMNMX chain) and exp_poly=8 / 16 (one exp2 in 8 / 16 on the FMA pipe) on top
#     of it; quick cases, then 512-16k points at d64 and d128 (causal and not), 2 rounds.
#     Predictions at d64 (÷ pp): max_tree +0..+2 %, exp_poly=8 −3..+3 %, exp_poly=16
#     −1..+2 % (the CUDA kernel's own: tree +0.6 %, 1-in-4 polynomial −4 %); d128 ±2 %.
# (2) the Gluon backward: h64 (HSPLIT, d256) and m64o (d128, no spill) beside m64, quick
#     cases, then d256 and d128 backward points against cuDNN / FLASH, 2 rounds.
# (3) the GPU tests of both through the backend (the knobs' too).
# (4) through the backend, Gluon ÷ plain-Triton backward at d256 (ab_hopper trib gluon_bwd).
# Other predictions as in device_s37b.sh / device_s38.sh.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s39one ${BUDGET:-560}
TAIL=60 step gluon_dynamic "$(left 170)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_dynamic" --timeout 90 --bench-timeout 130 --rounds 2 --cases quick \
    --variants pp,pp-dynamic,pp:max_tree=1,pp:max_tree=1:exp_poly=8,pp:max_tree=1:exp_poly=16 --bench-anyway \
    --points 512x64,1024x64,2048x64,4096x64,16384x64,512x64c,1024x64c,2048x64c,4096x64c,16384x64c,1024x128,2048x128,16384x128,1024x128c,2048x128c,16384x128c
repack
TAIL=40 step gluon_bwd_h64 "$(left 170)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd_h64" --cases quick --rounds 2 --timeout 120 --bench-timeout 150 \
    --variants m64,m64o,h64 --bench-anyway \
    --points 2048x256,4096x256,8192x256,16384x256,2048x256c,4096x256c,8192x256c,16384x256c,4096x128,16384x128,4096x128c,16384x128c
repack
TAIL=8 step gpu_tests "$(left 110)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py -k "gluon_backward or dynamic or softmax_knobs"
repack
TAIL=14 step ab_d256_bwd "$(left 90)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 2 \
    --name ab_trib_gluon_d256_s38 --seqs 2048,4096,8192,16384 \
    --pair trib:256:full:default,gluon_bwd --pair trib:256:causal:default,gluon_bwd
repack
gpu_clocks
repack
