#!/bin/bash
# One device call for the CUDA backward (fa3_bwd.cu): a smoke test of every variant's
# tracing build (a hang is reported after 15 s with the phase every role of every CTA
# reached, from pinned memory; the whole smoke ends in 150 s) that prints each gradient's
# error separately (dV wrong: the P/dO path; dK: dS; dQ only: the stmatrix transpose, the
# dS·K product or the accumulator decoding),
# then cuda_bwd_check.py (tolerance grid, then timing against SDPA cuDNN / flash /
# efficient and triton-fa2 in the same run, of the variants whose cases all passed; a
# launch that hangs there ends the run after 20 s, naming the case, results so far saved).
#   [SMOKE_DIMS=128,64 SMOKE_TILES=s2-ahead,...] bash benchmarks/device_cuda_bwd.sh [cuda_bwd_check.py args...]
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_BWD=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
timeout 150 python3 - <<'PY' || { echo "SMOKE FAILED rc=$?"; exit 1; }
import time
from concurrent.futures import ThreadPoolExecutor
import torch
import torch.nn.functional as F
from attnhub.contract import Problem
from attnhub_hopper import cuda_bwd
from attnhub_hopper.cuda_bwd_check import run_traced

# the tracing build of every variant first (built in parallel: NVRTC releases the GIL): a
# hang is reported (which phase each role of each CTA reached) after 15 s instead of
# ending in the timeout
# SMOKE_DIMS=128,64 / SMOKE_TILES=s2-ahead,... limit it (e.g. to variants not yet run)
import os
dims = [int(d) for d in os.environ.get("SMOKE_DIMS", "128,64,256").split(",")]
names = os.environ.get("SMOKE_TILES")
specs = [(D, causal, tile) for D in dims for tile in cuda_bwd.tiles_for(D)
         if not names or str(tile) in names.split(",") for causal in (False, True)]
t = time.time()
with ThreadPoolExecutor(8) as ex:
    list(ex.map(lambda s: cuda_bwd._kernel(torch.cuda.current_device(), s[0], s[1],
                                           torch.bfloat16, s[2], True), specs))
print(f"{len(specs)} tracing builds in {time.time() - t:.1f} s", flush=True)
for D, causal, tile in specs:
    S = 300
    p = Problem(1, 2, 2, S, S, D, D, torch.bfloat16, torch.device("cuda"),
                scale=D ** -0.5, causal=causal)
    q, k, v = (torch.randn(1, 2, S, D, device="cuda").bfloat16() for _ in range(3))
    t = time.time()
    o, do, (dq, dk, dv) = run_traced(q, k, v, p, tile)
    qf, kf, vf = (x.float().requires_grad_() for x in (q, k, v))
    F.scaled_dot_product_attention(qf, kf, vf, is_causal=causal).backward(do.float())
    errs = {n: round((g.float() - r.grad).abs().max().item(), 4)
            for n, g, r in (("dq", dq, qf), ("dk", dk, kf), ("dv", dv, vf))}
    scale = {n: round(r.grad.abs().max().item(), 3) for n, r in (("dq", qf), ("dk", kf), ("dv", vf))}
    print(f"d{D} {tile} causal={causal} first call {time.time() - t:.2f} s; max err {errs} "
          f"(max |grad| {scale}); nan {[bool(g.isnan().any()) for g in (dq, dk, dv)]}",
          flush=True)
PY
python3 backends/attnhub_hopper/cuda_bwd_check.py --out "$OUT" "$@"
