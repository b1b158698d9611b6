#!/usr/bin/env bash
# One device call (about 5 minutes): BwdTile.desc_add, the backward twin of the forward's
# Tile.desc_add (wgmma descriptors as one encoded base plus offsets).  The SASS of the
# shipped backward tiles has 20-34 % fewer uniform instructions with it (7-11 % fewer in
# all).  Tolerance cases (cuda_bwd_check.run_case: NaN-poisoned memory, rerun determinism)
# of every shipped tile's desc_add build at d64/128/256, then interleaved A/B.
# Prediction: +1-3 % at d64/d128, ~+1 % at d256.  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=12 step desc_bwd_cases 200 python3 - <<'PY'
from attnhub_hopper import cuda_bwd
from attnhub_hopper.cuda_bwd_check import run_case
tiles = {(D, c, cuda_bwd.default_tile(D, c, s)) for D in (64, 128, 256) for c in (False, True)
         for s in (1024, 2048, 4096, 8192, 16384)}
cases = []
for D, causal, tile in sorted(tiles, key=str):
    t = tuple(tile._replace(desc_add=True))
    for shape in (dict(Sq=1023, Sk=1031, B=2, Hq=4, Hk=2), dict(Sq=113, Sk=203, B=2, Hq=4, Hk=4),
                  dict(Sq=2048, Sk=2048, B=2, Hq=4, Hk=4), dict(Sq=1, Sk=4096, B=2, Hq=4, Hk=4),
                  dict(Sq=1500, Sk=200, B=2, Hq=16, Hk=4)):
        cases.append(dict(D=D, causal=causal, tile=t, **shape))
res = [run_case(c) for c in cases]
bad = [r for r in res if not r["ok"]]
for r in bad[:10]:
    print("FAIL", r["id"], r.get("error") or r.get("report"))
print(f"desc_add backward tolerance cases: {len(res) - len(bad)}/{len(res)} passed")
PY
A="python3 benchmarks/ab_hopper.py --rounds ${ROUNDS:-6} --out $OUT"
TAIL=12 step desc_bwd_ab 300 bash -c "$A --name ab_desc_bwd --seqs 2048,8192,16384 \
    --pair bwd:64:full:s2-poly1,s2-poly1-desc --pair bwd:128:full:s2-poly1-alt,s2-poly1-alt-desc \
    --pair bwd:128:causal:s2-alt,s2-alt-desc --pair bwd:256:full:s2-atomic-v4-relay,s2-atomic-v4-relay-desc"
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
