"""What a backward call spends outside its main kernel: per-kernel GPU time of hopper-fa3's
CUDA backward (Δ pre-pass, dQ-accumulator memset, main kernel, dQ conversion) and of SDPA's
cuDNN backward, from torch.profiler, at FA-grid points.

The passes around the main kernel move a fixed number of bytes per element of Q (the FA
grid keeps B·S = 16k and H·D = 2048, so the same at every point), while the main kernel's
work grows with S and halves when causal: this shows what share they take where.

    python benchmarks/bwd_passes.py --out $OUT --points 256:1024:causal,256:4096:causal

``--convert``: instead, time the dQ conversion (``bwd_host._dq_convert``) alone under each of
``--configs`` (columns per program, warps) at every head dim, each output checked against
the torch decoding first.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def kernel_times(fn, reps: int = 10) -> dict:
    """Mean GPU microseconds per call of every kernel ``fn`` launches, by name."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None)
        if us is None:
            us = e.cuda_time_total
        if us > 0 and e.count >= reps and not e.key.startswith(("cudaLaunch", "cuLaunch")):
            out[e.key[:80]] = us / reps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="256:1024:causal,256:4096:causal,256:4096:full,"
                    "128:1024:causal,128:16384:causal,64:1024:full")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--name", default="bwd_passes")
    ap.add_argument("--convert", action="store_true")
    ap.add_argument("--configs", default="0:4,0:8,64:4,32:4,64:8")
    args = ap.parse_args()
    if args.convert:
        return convert(args)

    import torch
    from attnhub_hopper import cuda_bwd, cuda_fwd
    from attnhub_hopper.cuda_bwd_check import sdpa_bwd_fn
    from attnhub_hopper.device_check import fa_point

    rows = []
    for point in args.points.split(","):
        d, s, mode = point.split(":")
        D, S, causal = int(d), int(s), mode == "causal"
        p, q, k, v = fa_point(D, S, causal)
        o, lse = cuda_fwd.forward(q, k, v, p)[:2]
        do = torch.randn_like(o)
        ours = kernel_times(lambda: cuda_bwd.backward(do, q, k, v, o, lse, p))
        fn, leaves = sdpa_bwd_fn("CUDNN_ATTENTION", q, k, v, do, causal)

        def cudnn_bwd():
            for t in leaves:  # fresh gradients, no accumulation kernels
                t.grad = None
            fn()
        cudnn = kernel_times(cudnn_bwd)
        row = dict(head_dim=D, seqlen=S, causal=causal, hopper_fa3_us=ours, cudnn_us=cudnn,
                   hopper_total_us=sum(ours.values()), cudnn_total_us=sum(cudnn.values()))
        rows.append(row)
        print(f"d{D} s{S} {mode}: hopper-fa3 {row['hopper_total_us']:.0f} us, "
              f"cuDNN {row['cudnn_total_us']:.0f} us", flush=True)
        for who, ks in (("  hopper", ours), ("  cudnn ", cudnn)):
            for name, us in sorted(ks.items(), key=lambda kv: -kv[1]):
                print(f"{who} {us:9.1f} us  {name}", flush=True)
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                       date=time.strftime("%Y-%m-%d %H:%M"), rows=rows), f, indent=1)


def convert(args) -> None:
    import torch
    from triton.testing import do_bench
    from attnhub_hopper import cuda_bwd

    rows = []
    for D in (64, 128, 256):
        B, H, S = 16384 // 4096, 2048 // D, 4096  # the FA grid's element count
        vec = cuda_bwd.default_tile(D).red_v4 or cuda_bwd.default_tile(D).vec_io
        n_m = S // cuda_bwd.block_m_for(D)
        acc = torch.randn(B, H, n_m, 2, 64 * cuda_bwd._dq_n(D), device="cuda")
        q = torch.empty(B, H, S, D, device="cuda", dtype=torch.bfloat16)
        ref = cuda_bwd._dq_from_accum_torch(acc, q, 0.125, vec)
        for text in args.configs.split(","):
            cols, warps = (int(x) for x in text.split(":"))
            if cols >= cuda_bwd._dq_n(D):
                continue
            out = torch.full_like(q, float("nan"))
            try:
                out = cuda_bwd._dq_from_accum_triton(acc, q, 0.125, vec, (cols, warps))
            except ValueError as e:
                print(f"d{D} {text}: {e}")
                continue
            ok = bool(torch.equal(out, ref))
            us = do_bench(lambda: cuda_bwd._dq_from_accum_triton(acc, q, 0.125, vec,
                                                                  (cols, warps)),
                          warmup=25, rep=100) * 1e3
            gbs = (acc.numel() * 4 + q.numel() * 2) / us / 1e3
            rows.append(dict(head_dim=D, vec=vec, cols=cols, warps=warps, us=us, gb_s=gbs,
                             equal_to_torch=ok))
            print(f"d{D} vec={int(vec)} cols={cols} warps={warps}: {us:.1f} us "
                  f"({gbs:.0f} GB/s) {'ok' if ok else 'MISMATCH'}", flush=True)
    with open(os.path.join(args.out, f"{args.name}_convert.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                       date=time.strftime("%Y-%m-%d %H:%M"), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
