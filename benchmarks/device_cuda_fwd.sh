#!/bin/bash
# One device call: smoke test of the CUDA forward, bf16 and FP8 (hangs end in 90 s), then
# cuda_check.py (correctness grid + FA-grid timing against SDPA cuDNN / flash and the Triton
# kernel; --fp8 for the FP8 kernel's).
#   bash benchmarks/device_cuda_fwd.sh [cuda_check.py args...]
source benchmarks/device_setup.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
timeout 90 python3 - <<'PY' || { echo "SMOKE FAILED rc=$?"; exit 1; }
import torch, time, torch.nn.functional as F
from attnhub.contract import Problem
from attnhub_hopper import cuda_fwd
for causal in (False, True):  # the persistent kernel first, alone (a hang ends here)
    q, k, v = (torch.randn(2, 4, 1000, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    p = Problem(2, 4, 4, 1000, 1000, 128, 128, torch.bfloat16, torch.device("cuda"), scale=128 ** -0.5, causal=causal)
    t = time.time(); o, lse = cuda_fwd.forward(q, k, v, p, tile=cuda_fwd.Tile(128, 2, True, False, True)); torch.cuda.synchronize()
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    print("persistent causal", causal, "first call", round(time.time() - t, 2), "s; max err", (o.float() - ref).abs().max().item(), flush=True)
for causal in (False, True):
    q, k, v = (torch.randn(2, 4, 1000, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    p = Problem(2, 4, 4, 1000, 1000, 128, 128, torch.bfloat16, torch.device("cuda"), scale=128 ** -0.5, causal=causal)
    print("reason:", cuda_fwd.unsupported_reason(q, k, v, p), flush=True)
    t = time.time(); o, lse = cuda_fwd.forward(q, k, v, p); torch.cuda.synchronize()
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    print("causal", causal, "first call", round(time.time() - t, 2), "s; max err", (o.float() - ref).abs().max().item(), "nan", o.isnan().any().item(), flush=True)
    p8 = Problem(2, 4, 4, 1000, 1000, 256, 256, torch.float8_e4m3fn, torch.device("cuda"), scale=256 ** -0.5, causal=causal)
    x = [torch.randn(2, 4, 1000, 256, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    q8, k8, v8 = (t.to(torch.float8_e4m3fn) for t in x)
    print("fp8 reason:", cuda_fwd.unsupported_reason(q8, k8, v8, p8), flush=True)
    t = time.time(); o, lse = cuda_fwd.forward(q8, k8, v8, p8); torch.cuda.synchronize()
    ref = F.scaled_dot_product_attention(*(t_.float() for t_ in (q8, k8, v8)), is_causal=causal)
    print("fp8 causal", causal, "first call", round(time.time() - t, 2), "s; max err", (o.float() - ref).abs().max().item(), "nan", o.isnan().any().item(), flush=True)
PY
python3 backends/attnhub_hopper/cuda_check.py --out "$OUT" "$@"
