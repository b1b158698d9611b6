#!/usr/bin/env bash
# One device call (twenty-sixth session, under 10 minutes; it replaces the twenty-fifth
# session's device_grid_rounds.sh and device_d128_full_ab.sh, which never ran).
# (1) d128 non-causal 2k-8k forward, the weakest forward region after run9 (1.03-1.06x cuDNN
# in interleaved rounds): the shipped tile against its neighbours with today's softmax
# options (wider key blocks, ping-pong, CTA pairs multicasting K/V), 8 interleaved rounds
# with cuDNN each round; prediction 0..+2 %.  (2) the bf16 grid at the target seqlens
# (2k-16k) with --rounds 3, then with one timing, both with the matmul ceiling and
# nvidia-smi clocks, and the two compared point by point (grid_summary --against).
# Every step is bounded by BUDGET seconds in all (default 560, under the call's 600 s limit)
# and $OUT/all.tgz is re-packed after each step, so a call cut short by the device time left
# still brings back every finished step.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s26 560
A="python3 benchmarks/ab_hopper.py --rounds 8 --out $RES"
S="-lazy-tree"
TAIL=8 step ab_d128_2k4k "$(left 110)" $A --name ab_d128_full_2k4k --seqs 2048,4096 \
    --pair fwd:128:full:default,n176s2$S --pair fwd:128:full:default,n176s2-pp$S \
    --pair fwd:128:full:default,n128s2-pp-c2$S
repack
TAIL=8 step ab_d128_8k "$(left 80)" $A --name ab_d128_full_8k --seqs 8192 \
    --pair fwd:128:full:default,n176s2-c2$S --pair fwd:128:full:default,n176s2-pp$S \
    --pair fwd:128:full:default,n128s2-pp$S
repack
TAIL=4 grid_step rounds3 "$(left 250)" bf16 --rounds 3
repack
TAIL=4 grid_step single "$(left 170)" bf16
gpu_clocks
python3 benchmarks/grid_summary.py "$RES"/rounds3/*.json --against "$RES"/single/*.json \
    > "$RES/grid_rounds3_vs_single.md" 2>&1
repack
