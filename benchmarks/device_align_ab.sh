#!/usr/bin/env bash
# RAN ONCE, KEPT AS THE RECORD (ab_align_d64_h100_2026-12-06): Tile.top (`-top`, the old
# alignment) was removed after it, so its `default-top` pair no longer resolves.  Its case
# list is now cuda_check's shared one; the run used 13 of those shapes (not 100 x 3000 and
# 4000 x 64), 156 cases (the script as run: git show f69918e:benchmarks/device_align_ab.sh).
# One device call (about 7 minutes; twentieth session): causal forward tiles aligned to the
# last query (the first one clamped to row 0) instead of starting at row 0, so the rows a
# grid of BLOCK_M leaves over no longer sit in the last tile, where they see every key
# (d64's 192-row tiles: 64 dead rows at 2k, 128 at 4k).  `-top` builds the old alignment.
# Tolerance cases of every shipped causal 16-bit tile (Sq not a multiple of the tile, Sq !=
# Sk, empty rows, GQA/MQA, BSHD, fp16, q * 8; each case also checks two runs bit-identical,
# the overlapping rows written by two CTAs), interleaved A/B default-top vs default at d64
# causal 2k-16k, then the CUDA forward's GPU tests.
# Prediction (products counted): d64 causal 2k +5 %, 4k +6 %, 8k / 16k +1.5 %, if the
# tensor cores bound it; d128/d256 (128-row tiles, Sq a multiple of 128 on the FA grid)
# build the same work as before.
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=12 step align_cases 240 python3 -c '
from attnhub_hopper.cuda_check import causal_tile_cases, report_cases
report_cases(causal_tile_cases(), "aligned causal tolerance cases")'
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
TAIL=12 step align_ab 200 $A --name ab_align_d64 --seqs 2048,4096,8192,16384 \
    --pair fwd:64:causal:default-top,default
TAIL=4 step fwd_gpu_tests 240 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py
pack_out
