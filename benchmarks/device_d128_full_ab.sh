#!/usr/bin/env bash
# One device call (about 2-3 minutes; written in the twenty-fifth session, not yet run):
# d128 non-causal forward at 2k-8k, the forward's weakest region after run9 (1.03-1.06x
# cuDNN in 8 interleaved rounds, ab_max_tree_h100_2026-12-06_s25).  The tiles there were
# chosen in the ninth/tenth sessions, before lazy rescale, ones_sum and the tree max made
# the softmax cheaper; re-time the neighbours with today's options against the shipped tile:
# wider key blocks (n176, with and without ping-pong) and CTA pairs multicasting K/V (c2).
# Prediction: a cheaper softmax favours wider blocks a little at 4k (0..+2 %), c2 at 8k
# 0..+2 % as before; nothing large.  8 interleaved rounds, cuDNN each round.  Carry .whl.
set -u
source benchmarks/device_setup.sh
A="python3 benchmarks/ab_hopper.py --rounds 8 --out $OUT"
S="-lazy-tree"
TAIL=8 step ab_d128_2k4k 150 $A --name ab_d128_full_2k4k --seqs 2048,4096 \
    --pair fwd:128:full:default,n176s2$S --pair fwd:128:full:default,n176s2-pp$S \
    --pair fwd:128:full:default,n128s2-pp-c2$S
TAIL=8 step ab_d128_8k 120 $A --name ab_d128_full_8k --seqs 8192 \
    --pair fwd:128:full:default,n176s2-c2$S --pair fwd:128:full:default,n176s2-pp$S \
    --pair fwd:128:full:default,n128s2-pp$S
pack_out
