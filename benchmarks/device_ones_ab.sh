#!/usr/bin/env bash
# One device call (about 4 minutes): Tile.ones_sum at d64 (the softmax's row sums by the
# P·V product, m64n72 against a block of ones in shared memory, instead of 64 FADDs per key
# block and thread; fa3_fwd.cu ONES_SUM).  The eighteenth session's per-instruction samples
# show d64 issue-bound (490 instructions per key block and warp, FMNMX/FFMA/FADD/MUFU 66-70
# each) and the fifth session's poly experiment lost because the FMA pipe is the busier one;
# this takes 64 FMA-pipe instructions (12 %) out of the loop for 6 % more tensor work.
# Tolerance cases of every shipped d64 tile with ones_sum (bf16 and fp16, GQA, fully masked
# rows), the O/LSE errors of one case next to the shipped tile's, then interleaved A/B.
# Prediction: +2-5 % at d64 (causal and not), 1k-16k.  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=14 step ones_cases 200 python3 - <<'PY'
import torch
from attnhub_hopper import cuda_fwd
from attnhub_hopper.cuda_check import report_cases, run_case
cases = []
for D, causal, tile in sorted(cuda_fwd.shipped_tiles(), key=str):
    if D != 64:
        continue
    t = tuple(tile._replace(ones_sum=True))
    for shape in (dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2), dict(Sq=113, Sk=203, B=2, Hq=4, Hk=4),
                  dict(Sq=2000, Sk=2000, B=4, Hq=8, Hk=8), dict(Sq=1, Sk=4096, B=2, Hq=4, Hk=4),
                  dict(Sq=300, Sk=100, B=2, Hq=4, Hk=1),
                  dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2, dtype=torch.float16)):
        cases.append(dict(D=D, causal=causal, tile=t, **shape))
report_cases(cases, "ones_sum tolerance cases")
for causal in (False, True):  # the errors next to the shipped tile's on one problem
    tile = cuda_fwd.default_tile(64, causal, 2048)
    for t in (tile, tile._replace(ones_sum=True)):
        r = run_case(dict(D=64, causal=causal, tile=tuple(t), Sq=2000, Sk=2000, B=4, Hq=8, Hk=8))
        print(t, r.get("report") or r.get("error"))
PY
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
TAIL=14 step ones_ab 300 bash -c "$A --name ab_ones --seqs 1024,2048,4096,8192,16384 \
    --pair fwd:64:causal:default,default-ones --pair fwd:64:full:default,default-ones"
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
