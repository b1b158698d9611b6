#!/bin/bash
# One device call: smoke test of the CUDA forward, bf16 and FP8 (hangs end in 90 s), then
# cuda_check.py (correctness grid + FA-grid timing against SDPA cuDNN / flash and the Triton
# kernel; --fp8 for the FP8 kernel's).
#   bash benchmarks/device_cuda_fwd.sh [cuda_check.py args...]
# e.g. --dims 192 for the head dim still waiting for its first GPU check
# (cuda_fwd.UNVERIFIED_HEAD_DIMS; the smoke and cuda_check.py run it with the switch on).
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_UNVERIFIED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
timeout 90 python3 - <<'PY' || { echo "SMOKE FAILED rc=$?"; exit 1; }
import time
import torch
import torch.nn.functional as F
from attnhub.contract import Problem
from attnhub_hopper import cuda_fwd

PERSISTENT = cuda_fwd.Tile(128, 2, True, persistent=True)
# (what, head dim, dtype, tile): the persistent kernel first, alone (a hang ends there)
for what, D, dt, tile in (("persistent", 128, torch.bfloat16, PERSISTENT),
                          ("bf16", 128, torch.bfloat16, None),
                          ("bf16 d192", 192, torch.bfloat16, None),
                          ("fp8", 256, torch.float8_e4m3fn, None)):
    for causal in (False, True):
        q, k, v = (torch.randn(2, 4, 1000, D, device="cuda").to(dt) for _ in range(3))
        p = Problem(2, 4, 4, 1000, 1000, D, D, dt, torch.device("cuda"), scale=D ** -0.5,
                    causal=causal)
        t = time.time()
        o, lse = cuda_fwd.forward(q, k, v, p, tile=tile)
        torch.cuda.synchronize()
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
        print(what, "causal", causal, "reason:", cuda_fwd.unsupported_reason(q, k, v, p),
              "first call", round(time.time() - t, 2), "s; max err",
              (o.float() - ref).abs().max().item(), "nan", o.isnan().any().item(), flush=True)
PY
python3 backends/attnhub_hopper/cuda_check.py --out "$OUT" "$@"
