#!/usr/bin/env bash
# One device call, ready after the thirty-first session (BUDGET seconds in all, default 560;
# $OUT/all.tgz re-packed after every step; carry .whl).  The thirty-first session got no
# machine (every start refused or taken back), so device_s31.sh's steps follow this one's.
# (0) Tile.split (the last wave's tiles cut along the keys over every CTA; built and
#     CPU-checked in the thirty-first session, never run): its GPU cases
#     (tests/backends/test_hopper_split.py: tolerance rule with poisoned outputs, bit-equal
#     reruns, agreement with the unsplit tile) and the d224 forward cases (-k 224, among
#     them d224 on d256's shipped non-causal tile: if it passes, _bf16_tile's `padded` rule
#     can go).
# (1) Only if (0) passed: interleaved A/B, cuDNN every round.  Prediction (a makespan
#     model of 132 SMs, NOTES.md "Thirty-first session"): the last wave is 52 % full at d128
#     (2048 tiles) and 76 % at d256 (1024 tiles), so +1.4..+1.9 % at 2k and +2.3..+3.0 % at
#     4k-16k, less what a piece costs; fewer than +1 % at 2k means the pieces cost more.
#     d64 non-causal 2k / 4k (2816 192-row tiles, 21.33 waves): +1.8..+2.7 %.
# (2) device_s31.sh's ncu of d128 non-causal 2k and the bf16 grid, with what is left.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s32 560
# first two cases alone, so that a hang (the split's pieces count on each other through
# global memory) costs 60 s, not the whole step
TAIL=6 step split_smoke "$(left 60)" python3 -m pytest -q -m gpu -p no:cacheprovider -x \
    tests/backends/test_hopper_split.py -k "on_the_gpu and bf16 and B3 and n128s2"
if grep -q "2 passed" "$RES/split_smoke.txt"; then
    TAIL=6 step split_tests "$(left 150)" python3 -m pytest -q -m gpu -p no:cacheprovider -x \
        tests/backends/test_hopper_split.py
else
    echo "split smoke did not pass: the A/Bs are skipped" > "$RES/split_tests.txt"
fi
# the d224 cases, and every forward tile and the determinism case (the kernel's persistent
# loop changed for the split: the shipped persistent tiles run it with no ranges)
TAIL=3 step hopper_d224 "$(left 120)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py tests/backends/test_hopper_fa3.py \
    -k "224 or every_tile or deterministic"
repack
if grep -q " passed" "$RES/split_tests.txt" && ! grep -qE "failed|error" "$RES/split_tests.txt"; then
    TAIL=6 step ab_split_d128_2k "$(left 60)" python3 benchmarks/ab_hopper.py --out $RES \
        --rounds 12 --name ab_split_d128_2k --seqs 2048 --pair fwd:128:full:default,default-split
    repack
    TAIL=6 step ab_split_d128 "$(left 70)" python3 benchmarks/ab_hopper.py --out $RES \
        --rounds 10 --name ab_split_d128 --seqs 4096,8192 \
        --pair fwd:128:full:default,default-persist-split
    repack
    TAIL=6 step ab_split_d256 "$(left 70)" python3 benchmarks/ab_hopper.py --out $RES \
        --rounds 10 --name ab_split_d256 --seqs 2048,8192 \
        --pair fwd:256:full:default,default-persist-split
    repack
    TAIL=6 step ab_split_d64 "$(left 60)" python3 benchmarks/ab_hopper.py --out $RES \
        --rounds 10 --name ab_split_d64 --seqs 2048,4096 --pair fwd:64:full:default,default-split
    repack
fi
NCU_SECONDS=$(left 90) ncu_prof fwd_d128_2k --d 128 --s 2048 --impls hopper-fa3,cudnn
repack
grid_step bf16_r3 "$(left 250)" bf16 --rounds 3
gpu_clocks
repack
