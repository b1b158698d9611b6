#!/usr/bin/env bash
# RAN ONCE, KEPT AS THE RECORD (ab_chain_*_h100_2026-12-06): Tile.chain lost 3-12 % at
# every point and was removed, so its `-chain` names no longer resolve (NOTES.md).
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
TAIL=12 step chain_cases 240 python3 - <<'PY'
import torch
from attnhub_hopper import cuda_fwd
from attnhub_hopper.cuda_check import report_cases
cases = []
for D, causal, tile in sorted(cuda_fwd.shipped_tiles(), key=str):
    if not tile.persistent:
        continue
    t = tile._replace(chain=True)
    for shape in (dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2), dict(Sq=113, Sk=203, B=2, Hq=4, Hk=4),
                  dict(Sq=2000, Sk=2000, B=4, Hq=8, Hk=8), dict(Sq=1, Sk=4096, B=2, Hq=4, Hk=4),
                  dict(Sq=300, Sk=100, B=2, Hq=4, Hk=1), dict(Sq=3000, Sk=1000, B=2, Hq=8, Hk=8),
                  dict(Sq=4000, Sk=64, B=2, Hq=8, Hk=2), dict(Sq=2048, Sk=2048, B=8, Hq=16, Hk=16),
                  dict(Sq=2000, Sk=2000, B=2, Hq=4, Hk=4, q_scale=8.0),
                  dict(Sq=1500, Sk=3000, B=2, Hq=4, Hk=2, q_scale=4.0, dtype=torch.float16),
                  dict(Sq=777, Sk=777, B=3, Hq=6, Hk=3, layout="bshd")):
        cases.append(dict(D=D, causal=causal, tile=tuple(t), **shape))
report_cases(cases, "chain tolerance cases")
PY
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
M=n128s2-pp-persistent-lpt-m192-ones-lazy
TAIL=60 step chain_ab 420 bash -c "$A --name ab_chain_d64 --seqs 1024,2048,4096 \
      --pair fwd:64:causal:default,default-chain --pair fwd:64:full:default,default-chain \
    && $A --name ab_chain_d128 --seqs 1024 \
      --pair fwd:128:causal:default,default-chain --pair fwd:128:full:default,default-chain \
    && $A --name ab_chain_d128_2k --seqs 2048 --pair fwd:128:full:default,default-chain \
    && $A --name ab_chain_d64_8k --seqs 8192 --pair fwd:64:causal:default,$M-chain"
pack_out
