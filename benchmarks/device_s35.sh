#!/usr/bin/env bash
# First call of the thirty-fifth session (BUDGET seconds, default 540; carry .whl).
# (0) Gluon forward variants (GLUON_NOTES "Next" 2), cases then the FA grid's forward points at
#     d64/d128 against SDPA cuDNN/FLASH, 2 interleaved rounds: pp as shipped (its source was
#     restructured into per-tile helpers: SASS differs by a register or two), pp on a
#     persistent grid, the 192-row tile (three consumer warpgroups, 160 regs: pp3 spills 224 B
#     at block_n 128, none at block_n 64), pp3 persistent, and pp with block_n 64 / 3 stages.
#     Predictions: persistent +3-6 % at 2k, +-1 % at 16k; pp3:block_n=64 +0-4 % at d64 8k-16k,
#     loses at d128.  Thirty-sixth session: pp3 (spilling, predicted to lose) and pp:stages=3
#     (timed in s34: nothing) dropped for pp over (B, S, H, D) memory (bshd=1; its bench
#     times the same values in that layout) and over a packed QKV (bshd=2, cases only where
#     Hq == Hk and Sq == Sk).
# (1)-(2) device_s34c.sh, which never ran: the Gluon route through the backend (GPU tests,
#     triton-fa2's backward from its O/LSE), and the route's A/B against the plain-Triton
#     forward at 512-16k (sets GLUON_MIN_KEYS).
# (3) d256: pp/ws2/simple at block_n 64, 2 stages, timed for the first time (plain Triton read
#     0.67-0.83x cuDNN there).
# (4) the d256/d224 backward on BwdTile.tail: the hopper backward GPU cases at those dims.
# (5) the Gluon backward prototype (_gluon_bwd.py, GLUON_BWD_NOTES.md; compiled and emulated,
#     never run): its quick cases then the grid's backward points against SDPA cuDNN/FLASH.
#     Prediction (its notes): m64 0.45-0.65x cuDNN at d64, 0.60-0.80x at d128.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s35 ${BUDGET:-560}
TAIL=60 step gluon_variants "$(left ${GSECS:-180})" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_variants" --timeout 100 --bench-timeout 150 --rounds 2 --cases quick \
    --variants "${GVARIANTS:-pp,pp-persistent,pp3:block_n=64,pp3-persistent:block_n=64,pp:block_n=64,pp:bshd=1,pp:bshd=2}"
repack
TAIL=40 step gluon_bwd "$(left 130)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd" --cases quick --rounds 2 --timeout 80 --bench-timeout 100
repack
# the backward through the backend only if the kernel passed every case on its own (a hang
# there would eat the rest of the call)
KSEL="not gluon_backward"
grep -Eq "^correctness: ([0-9]+)/\1 passed" "$RES/gluon_bwd.txt" && KSEL="gluon"
TAIL=4 step gluon_gpu_tests "$(left 110)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py -k "$KSEL"
repack
TAIL=24 step ab_gluon "$(left 110)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 3 \
    --name ab_tri_gluon_s35 --seqs 512,1024,2048,4096,8192,16384 \
    --pair tri:64:full:nogluon,gluon --pair tri:64:causal:nogluon,gluon \
    --pair tri:128:full:nogluon,gluon --pair tri:128:causal:nogluon,gluon
repack
TAIL=20 step gluon_d256 "$(left 60)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_d256" --timeout 60 --bench-timeout 60 --rounds 2 --cases all \
    --variants pp,ws2,simple \
    --points 2048x256,4096x256,8192x256,16384x256,2048x256c,4096x256c,8192x256c,16384x256c
repack
TAIL=3 step hopper_bwd_d256 "$(left 60)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda_bwd.py -k "256 or 224" --durations=3
gpu_clocks
repack
