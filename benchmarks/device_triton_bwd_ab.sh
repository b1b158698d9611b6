#!/usr/bin/env bash
# One device call (about 4 minutes; written in the twenty-fourth session, not yet run):
# triton-fa2's backward with every load on pointers (ATTNHUB_TRITON_TMA=0) against the
# shipped one (TMA where it applies), 8 interleaved rounds with cuDNN in each, d64 / d128 /
# d256, 2k and 16k, causal and not.  The forward gained 2-23 % from pointer loads with an
# 8-warp tile at d64 (ab_tri_ptr_h100_2026-12-06); the backward is at 0.52-0.77x cuDNN
# (fa_grid_h100_2026-12-06_run8).  TMA=0 also turns the lean dK/dV kernel off (it is
# TMA-only), so d64's row compares lean+TMA against general+pointers; the last pair
# separates the two at d64.  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
TAIL=16 step ab_trib 400 python3 benchmarks/ab_hopper.py --rounds 8 --name ab_trib_notma \
    --seqs 2048,16384 --out "$OUT" \
    --pair trib:64:full:default,notma --pair trib:64:causal:default,notma \
    --pair trib:128:full:default,notma --pair trib:128:causal:default,notma \
    --pair trib:256:full:default,notma --pair trib:256:causal:default,notma \
    --pair trib:64:full:default,general_bwd
pack_out
