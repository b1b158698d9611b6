#!/usr/bin/env bash
# A device call (about 4 minutes): does timing dispatch's candidates in interleaved rounds
# (ATTNHUB_DISPATCH_ROUNDS=3) cost auto-dispatch speed?  In the two H200 grids of 2026-12-06
# that ran it, auto's forward delivered ~0.95x what the backend it chose did pinned (four
# earlier grids, one candidate after another: 0.99-1.00x); nothing in the code explains it.
# Here both settings run on one machine, twice each in alternating order (1 3 1 3), each
# with a fresh dispatch cache, on the forward points where the gap was largest; compare
# auto / hopper-fa3 per run (grid_summary.py, or the JSONs' `vs_cudnn`).  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
n=0
for rounds in 1 3 1 3; do
    n=$((n + 1))
    mkdir -p "$OUT/r${rounds}_$n"
    ATTNHUB_DISPATCH_ROUNDS=$rounds ATTNHUB_CACHE_DIR=/tmp/attnhub-cache-$n TAIL=2 \
        step "rounds${rounds}_run$n" 120 python3 benchmarks/fa_grid.py --dtypes bf16 \
        --head-dims 64 128 256 --seqlens 2048 8192 16384 --directions fwd \
        --methods hopper-fa3 auto sdpa-cudnn --warmup 10 --rep 40 --quiet --no-plot \
        --out "$OUT/r${rounds}_$n"
done
