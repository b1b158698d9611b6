#!/usr/bin/env bash
# First call of the thirty-sixth session (BUDGET seconds, default 560; carry .whl).  The
# thirty-fifth session's device_s35.sh never ran (no machine); this is it, reordered by value,
# with this session's additions.  Steps cut short by the budget come back as far as they got.
# (0) Gluon forward variants (GLUON_NOTES "Next" 2 and "Thirty-sixth session"), quick cases
#     then the FA grid's forward points at d64/d128 against SDPA cuDNN/FLASH, 2 interleaved
#     rounds: pp as shipped, pp on a persistent grid, the 192-row tile with 64-key blocks (and
#     persistent), pp with 64-key blocks, the lazy rescale (lazy=8), and pp over (B, S, H, D)
#     memory (bshd=1; the bench copies the same values to that layout) and a packed QKV
#     (bshd=2, cases only where Hq == Hk and Sq == Sk).
#     Predictions: persistent +3-6 % at 2k, +-1 % at 16k; pp3:block_n=64 +0-4 % at d64 8k-16k,
#     a loss at d128; lazy=8 -1..+3 % (d64 most); bshd=1 within +-3 % of pp.
# (1) the Gluon backward's first execution (GLUON_BWD_NOTES.md): quick cases, then the grid's
#     backward points: m64 (2-wide dQ atomics as launched), m64v4 (4-wide), m128v4 (d64),
#     m64tma (TMA bulk reduce).  Predictions: m64 0.45-0.65x cuDNN at d64, 0.60-0.80x at d128;
#     m64v4 +0..+5 % at d64; m128v4 +2..+8 % over m128.
# (2) d256 Gluon timed for the first time (64-key blocks, 2 stages; plain Triton 0.67-0.83x).
# (3) the Gluon route through the backend (GPU tests, BSHD and packed QKV included; the
#     backward's only if its cases passed).
# (4) the route's A/B against the plain-Triton forward at 512-16k (sets GLUON_MIN_KEYS).
# (5) the hopper d256/d224 backward GPU cases on BwdTile.tail.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s36 ${BUDGET:-560}
TAIL=60 step gluon_variants "$(left ${GSECS:-170})" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_variants" --timeout 100 --bench-timeout 150 --rounds 2 --cases quick \
    --variants "${GVARIANTS:-pp,pp-persistent,pp3:block_n=64,pp3-persistent:block_n=64,pp:block_n=64,pp:lazy=8,pp:bshd=1,pp:bshd=2}"
repack
TAIL=40 step gluon_bwd "$(left 150)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd" --cases quick --rounds 2 --timeout 80 --bench-timeout 120 \
    --variants "${BVARIANTS:-m64,m64v4,m128v4,m64tma}"
repack
TAIL=20 step gluon_d256 "$(left 60)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_d256" --timeout 60 --bench-timeout 60 --rounds 2 --cases d256 \
    --variants pp,ws2,simple \
    --points 2048x256,4096x256,8192x256,16384x256,2048x256c,4096x256c,8192x256c,16384x256c
repack
# the backward through the backend only if the kernel passed every case on its own (a hang
# there would eat the rest of the call)
KSEL="not gluon_backward"
grep -Eq "^correctness: ([0-9]+)/\1 passed" "$RES/gluon_bwd.txt" && KSEL="gluon"
TAIL=4 step gluon_gpu_tests "$(left 110)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_triton_gluon.py -k "$KSEL"
repack
TAIL=24 step ab_gluon "$(left 110)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 3 \
    --name ab_tri_gluon_s36 --seqs 512,1024,2048,4096,8192,16384 \
    --pair tri:64:full:nogluon,gluon --pair tri:64:causal:nogluon,gluon \
    --pair tri:128:full:nogluon,gluon --pair tri:128:causal:nogluon,gluon
repack
TAIL=3 step hopper_bwd_d256 "$(left 60)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda_bwd.py -k "256 or 224" --durations=3
gpu_clocks
repack
