"""One warmed-up call per implementation inside a CUDA profiler range, for Nsight Compute.

    ncu --clock-control none --profile-from-start off --section SpeedOfLight ... \\
        python3 benchmarks/ncu_profile.py --d 128 --s 16384

Every kernel between ``cudaProfilerStart`` and ``cudaProfilerStop`` is profiled: one forward
(and with ``--backward`` one backward) of each attnhub backend named in ``--impls`` and of
torch SDPA's cuDNN and flash kernels, on the FA-grid shape (tokens 16384, hidden 2048).
Warm-up calls (Triton compilation, dispatch) happen outside the ranges.  The script prints
which kernel names belong to which implementation, in launch order.  ``--fp8``: the attnhub
backends get ``quantize_fp8`` inputs (e4m3 + descales), the SDPA peers the bf16 ones.
"""

from __future__ import annotations

import argparse

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import attnhub

PEERS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--s", type=int, default=16384)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--impls", default="triton-fa2,hopper-fa3,cudnn,flash")
    ap.add_argument("--fp8", action="store_true")
    args = ap.parse_args()
    b, h = max(1, 16384 // args.s), 2048 // args.d
    torch.manual_seed(0)
    q, k, v = (torch.randn(b, h, args.s, args.d, device="cuda", dtype=torch.bfloat16,
                           requires_grad=args.backward) for _ in range(3))

    f8 = attnhub.quantize_fp8(q, k, v) if args.fp8 else None
    for name in args.impls.split(","):
        if name in PEERS:
            def call(name=name):
                with sdpa_kernel(PEERS[name]):
                    return torch.nn.functional.scaled_dot_product_attention(
                        q, k, v, is_causal=args.causal)
        elif f8 is not None:
            def call(name=name):
                return attnhub.attention(f8.q, f8.k, f8.v, causal=args.causal, backend=name,
                                         q_descale=f8.q_descale, k_descale=f8.k_descale,
                                         v_descale=f8.v_descale)
        else:
            def call(name=name):
                return attnhub.attention(q, k, v, causal=args.causal, backend=name)
        try:
            for _ in range(2):  # compile, dispatch, autotune: outside the profiled range
                out = call()
                if args.backward:
                    out.backward(torch.ones_like(out))
            torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - a missing peer is reported, not fatal
            print(f"[{name}] skipped: {type(exc).__name__}: {exc}", flush=True)
            continue
        do = torch.randn_like(out)
        torch.cuda.cudart().cudaProfilerStart()
        out = call()
        if args.backward:
            out.backward(do)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()
        print(f"[{name}] profiled d={args.d} s={args.s} causal={args.causal} "
              f"backward={args.backward} fp8={args.fp8 and name not in PEERS}", flush=True)


if __name__ == "__main__":
    main()
