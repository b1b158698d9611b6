#!/usr/bin/env bash
# RAN ONCE, KEPT AS THE RECORD (ab_chain_*_h100_2026-12-06): Tile.chain lost 3-12 % at
# every point and was removed, so its `-chain` names no longer resolve (NOTES.md).  Its case
# list is now cuda_check's shared one; the run used 11 shapes, 9 of them there plus
# 2000 x 2000 (B 4, H 8) and 2048 x 2048 (B 8, H 16), 77 cases (the script as run:
# git show f69918e:benchmarks/device_chain_ab.sh).
# One device call (about 6 minutes; twentieth session): Tile.chain, the persistent
# forward's tile boundary (a tile's last P·V and the next tile's first S back to back, the
# epilogue under that S).  Tolerance cases of every persistent shipped 16-bit tile with
# chain (shapes with several tiles per CTA, empty causal tiles, one-block tiles, fp16,
# q * 8), then interleaved A/B default vs default-chain where the default is persistent
# (d64 1k-4k, d128 1k and non-causal 2k), and the persistent 192-row tile with chain
# against the shipped one-CTA-per-tile one at d64 8k.
# Prediction: +1..+4 % at d64 causal 2k (the per-tile code was 21 % of its samples),
# less where tiles are long (4k) or ping-pong already hides the boundary.
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=12 step chain_cases 240 python3 -c '
from attnhub_hopper import cuda_fwd
from attnhub_hopper.cuda_check import report_cases, tile_cases
tiles = [(D, c, t._replace(chain=True)) for D, c, t in sorted(cuda_fwd.shipped_tiles(), key=str)
         if t.persistent]
report_cases(tile_cases(tiles), "chain tolerance cases")'
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
M=n128s2-pp-persistent-lpt-m192-ones-lazy
TAIL=60 step chain_ab 420 bash -c "$A --name ab_chain_d64 --seqs 1024,2048,4096 \
      --pair fwd:64:causal:default,default-chain --pair fwd:64:full:default,default-chain \
    && $A --name ab_chain_d128 --seqs 1024 \
      --pair fwd:128:causal:default,default-chain --pair fwd:128:full:default,default-chain \
    && $A --name ab_chain_d128_2k --seqs 2048 --pair fwd:128:full:default,default-chain \
    && $A --name ab_chain_d64_8k --seqs 8192 --pair fwd:64:causal:default,$M-chain"
pack_out
