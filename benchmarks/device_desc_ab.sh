#!/usr/bin/env bash
# One device call (about 5 minutes): Tile.desc_add (each wgmma's shared-memory descriptor as
# one encoded base plus the operand's offset, one uniform add, instead of re-encoding every
# address: 3-4 dependent uniform ops per wgmma).  ncu's per-instruction samples of the
# eighteenth session (fwd_src_*) put 80-155 `wait` samples on each P·V wgmma at d64 2k
# causal, behind that chain; the SASS has 23-32 % fewer uniform instructions (2-7 % fewer in
# all).  The tolerance cases of the desc_add build of every shipped tile at d64/128/256,
# then interleaved A/B (ab_hopper.py) at the points issue 4 misses or barely makes.
# Prediction: +0.5-2 % at d64 and at d128 short sequences, ~0 at d256.
# Everything packed into $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=12 step desc_cases 150 python3 - <<'PY'
from attnhub_hopper import cuda_fwd
from attnhub_hopper.cuda_check import run_case
cases = []
for D, causal, tile in cuda_fwd.shipped_tiles():
    if D not in (64, 128, 256):
        continue
    t = tuple(tile._replace(desc_add=True))
    for shape in (dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2), dict(Sq=113, Sk=203, B=2, Hq=4, Hk=4),
                  dict(Sq=2000, Sk=2000, B=4, Hq=8, Hk=8), dict(Sq=1, Sk=4096, B=2, Hq=4, Hk=4)):
        cases.append(dict(D=D, causal=causal, tile=t, **shape))
res = [run_case(c) for c in cases]
bad = [r for r in res if not r["ok"]]
for r in bad[:10]:
    print("FAIL", r["id"], r.get("error") or r.get("report"))
print(f"desc_add tolerance cases: {len(res) - len(bad)}/{len(res)} passed")
PY
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
TAIL=12 step desc_ab 330 bash -c "$A --name ab_desc --seqs 2048,8192 \
    --pair fwd:64:causal:default,default-desc --pair fwd:64:full:default,default-desc \
    --pair fwd:128:full:default,default-desc --pair fwd:128:causal:default,default-desc \
    --pair fwd:256:full:default,default-desc"
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
