#!/usr/bin/env bash
# One device call (about 2 minutes; twenty-fourth session): triton-fa2's d256 forward (the
# general kernel, 128x64 w8 s2, K/V by TMA) against the same kernel on pointer loads
# (ATTNHUB_TRITON_TMA=0), 8 interleaved rounds with cuDNN in each: at d64 pointer loads beat
# TMA by 2-23 % up to 4k keys (ab_tri_ptr).  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
TAIL=12 step ab_tri_d256 200 python3 benchmarks/ab_hopper.py --rounds 8 --name ab_tri_d256_notma \
    --seqs 1024,2048,4096,8192,16384 --out "$OUT" \
    --pair tri:256:causal:plain,notma --pair tri:256:full:plain,notma
pack_out
