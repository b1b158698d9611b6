#!/usr/bin/env bash
# One device call (about 2 minutes): Tile.tree (the forward softmax's row max / row sum over
# 4 / 2 partial chains instead of one dependent chain; ncu 2026-12-06: the CUDA forward
# stalls on `wait` 1.39-1.47 cycles per instruction against cuDNN's 0.86-0.90 at d64 2k
# causal and d128 2k).  The tolerance cases of the tree build of every shipped tile at
# d64/128/256, then interleaved A/B (ab_hopper.py) at the points issue 4 misses.
# Prediction: +1-3 % where the softmax's latency is exposed (d64 causal, short S), ~0 at d256.
# Everything packed into $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=12 step tree_cases 120 python3 - <<'PY'
import torch
from attnhub_hopper import cuda_fwd
from attnhub_hopper.cuda_check import run_case
cases = []
for D, causal, tile in cuda_fwd.shipped_tiles():
    if D not in (64, 128, 256):
        continue
    t = tuple(tile._replace(tree=True))
    for shape in (dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2), dict(Sq=113, Sk=203, B=2, Hq=4, Hk=4),
                  dict(Sq=2000, Sk=2000, B=4, Hq=8, Hk=8), dict(Sq=1, Sk=4096, B=2, Hq=4, Hk=4)):
        cases.append(dict(D=D, causal=causal, tile=t, **shape))
res = [run_case(c) for c in cases]
bad = [r for r in res if not r["ok"]]
for r in bad[:10]:
    print("FAIL", r["id"], r.get("error") or r.get("report"))
print(f"tree tolerance cases: {len(res) - len(bad)}/{len(res)} passed")
PY
A="python3 benchmarks/ab_hopper.py --rounds 4 --out $OUT"
TAIL=8 step tree_ab 200 bash -c "$A --name ab_tree --seqs 2048,4096 \
    --pair fwd:64:causal:default,default-tree --pair fwd:128:full:default,default-tree \
    --pair fwd:256:full:default,default-tree"
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
