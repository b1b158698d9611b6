#!/usr/bin/env bash
# One device call (about 4 minutes) after Tile.ones_sum became d64's non-causal tile from 8k
# keys: the CUDA forward's GPU tests (a long-key case per head dim now reaches that tile),
# the CUDA backward's tolerance cases on the LSE that tile writes (cuda_bwd_check.run_case,
# d64, 8k keys), then the d64 bf16 FA grid with every peer.  Everything in $OUT/all.tgz.
# Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=4 step fwd_gpu_tests 200 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py
TAIL=6 step ones_bwd_cases 100 python3 - <<'PY'
from attnhub_hopper import cuda_fwd
from attnhub_hopper.cuda_bwd_check import run_case
assert cuda_fwd.default_tile(64, False, 8200).ones_sum
cases = [dict(D=64, causal=False, Sq=512, Sk=8200, B=2, Hq=4, Hk=2),
         dict(D=64, causal=False, Sq=8192, Sk=8192, B=1, Hq=2, Hk=2),
         dict(D=64, causal=False, Sq=1000, Sk=9000, B=1, Hq=4, Hk=1, layout="bshd")]
res = [run_case(c) for c in cases]
for r in res:
    print("ok " if r["ok"] else "FAIL", r["id"], r.get("report") or r.get("error"))
print(f"backward on ones_sum LSE: {sum(r['ok'] for r in res)}/{len(res)} passed")
PY
ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid_d64 150 python3 benchmarks/fa_grid.py --dtypes bf16 \
    --head-dims 64 --exclude torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT"
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
