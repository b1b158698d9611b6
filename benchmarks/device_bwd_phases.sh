#!/bin/bash
# One short device call: the BWD_PROF phase split of hopper-fa3's CUDA backward (shipped
# tiles, d128 then d64 and d256, 1k/4k/16k, causal and not), each checked against the plain
# build's gradients, into $OUT/bwd_phases.json; then any ab_hopper.py arguments given
# (e.g. --pair fwd:256:full:default,n80s2-pp) into $OUT/ab_hopper.json.
#   bash benchmarks/device_bwd_phases.sh [ab_hopper.py args...]
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_BWD=1
timeout 150 python3 - <<'PY' || echo "PHASES FAILED rc=$?"
import json, os, time
import torch
from attnhub.contract import Problem
from attnhub_hopper import cuda_bwd, cuda_fwd

rows = []
for D in (128, 64, 256):
    for S in (1024, 4096, 16384):
        for causal in (False, True):
            B, H = 16384 // S, 2048 // D
            p = Problem(B, H, H, S, S, D, D, torch.bfloat16, torch.device("cuda"),
                        scale=D ** -0.5, causal=causal)
            q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
                       for _ in range(3))
            o, lse = cuda_fwd.forward(q, k, v, p)
            do = torch.randn_like(o)
            tile = cuda_bwd.default_tile(D, causal, S)
            r = dict(D=D, S=S, causal=causal, tile=str(tile),
                     **cuda_bwd.phase_profile(do, q, k, v, o, lse, p, tile))
            rows.append(r)
            print(f"d{D} s{S:>5} {'causal' if causal else 'full  '} {tile}: "
                  f"{r['cycles'] / max(r['blocks'], 1):.0f} cyc/block | diff {r['max_diff_vs_plain']} | "
                  + " ".join(f"{n} {x:.1%}" for n, x in r["share"].items() if x >= 0.005),
                  flush=True)
            with open(os.path.join(os.environ["OUT"], "bwd_phases.json"), "w") as f:
                json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                               date=time.strftime("%Y-%m-%d %H:%M"), rows=rows), f, indent=1)
PY
if [ $# -gt 0 ]; then
  timeout 150 python3 benchmarks/ab_hopper.py --out "$OUT" "$@" 2>&1 | tail -30
fi
