"""One GPU session for attnhub-torch-sdpa: the ops' conventions, the conformance kit for every
sub-kernel and dtype, and a small timing table against F.scaled_dot_product_attention.

    PYTHONPATH=$PWD:$PWD/backends:$PWD/plugins/attnhub-torch-sdpa \\
        python plugins/attnhub-torch-sdpa/tools/gpu_check.py [OUT_DIR]

Prints a compact table last; full JSON goes to OUT_DIR (default $OUT or /tmp).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "/tmp")
DEV = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # "cpu": a smoke test of this script
LOG: dict = {}


def save():
    with open(os.path.join(OUT, "torch_sdpa_gpu.json"), "w") as f:
        json.dump(LOG, f, indent=1, default=str)


def env():
    import attnhub_torch_sdpa._kernels as K
    dev = torch.device(DEV)
    if dev.type != "cuda":
        return dev
    LOG["env"] = {
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
        "cc": torch.cuda.get_device_capability(), "cudnn": torch.backends.cudnn.version(),
        "flash": torch.backends.cuda.is_flash_attention_available(),
        "kernels": {k.name: k.available() for k in (K.FLASH, K.CUDNN, K.EFFICIENT)},
    }
    print("ENV", LOG["env"], flush=True)
    return dev


def conventions(dev):
    """Raw ops: LSE shape and base, is_causal alignment for Sq != Sk, rows with no key."""
    torch.manual_seed(0)
    out = {}
    B, H, D = 2, 4, 64
    for sq, sk in ((200, 300), (300, 200)):
        q = torch.randn(B, H, sq, D, device=dev, dtype=torch.bfloat16)
        k = torch.randn(B, H, sk, D, device=dev, dtype=torch.bfloat16)
        v = torch.randn(B, H, sk, D, device=dev, dtype=torch.bfloat16)
        s = (q.double() @ k.double().transpose(-1, -2)) * D ** -0.5
        i = torch.arange(sq, device=dev)[:, None]
        j = torch.arange(sk, device=dev)[None]
        masks = {"none": None, "top-left": j <= i, "bottom-right": j <= i + (sk - sq)}
        ops = {
            "flash": lambda c: torch.ops.aten._scaled_dot_product_flash_attention(
                q, k, v, 0.0, c, False)[:2],
            "cudnn": lambda c: torch.ops.aten._scaled_dot_product_cudnn_attention(
                q, k, v, None, True, 0.0, c, False)[:2],
            "efficient": lambda c: torch.ops.aten._scaled_dot_product_efficient_attention(
                q, k, v, None, True, 0.0, c)[:2],
        }
        for name, op in ops.items():
            for causal in (False, True):
                key = f"{name}-{sq}x{sk}-{'causal' if causal else 'plain'}"
                try:
                    o, lse = op(causal)
                    torch.cuda.synchronize()
                except Exception as exc:  # noqa: BLE001
                    out[key] = f"raised {type(exc).__name__}: {str(exc)[:150]}"
                    continue
                row = {"lse_shape": tuple(lse.shape), "lse_stride": lse.stride(),
                       "o_stride": o.stride()}
                l2 = lse.reshape(B, H, -1)[:, :, :sq].double()
                for mname, m in masks.items():
                    if causal == (m is None):
                        continue
                    ss = s if m is None else s.masked_fill(~m, -math.inf)
                    ref = torch.logsumexp(ss, -1)
                    fin = torch.isfinite(ref)
                    row[f"lse_err_ln[{mname}]"] = (l2 - ref)[fin].abs().max().item()
                    row[f"lse_err_log2[{mname}]"] = (l2 - ref / math.log(2))[fin].abs().max().item()
                    if (~fin).any():
                        row[f"lse_empty_rows[{mname}]"] = sorted(set(l2[~fin].tolist()))[:3]
                        row[f"o_empty_rows_max[{mname}]"] = o[:, :, :sq][
                            (~fin)[..., None].expand(-1, -1, -1, D)].abs().max().item()
                out[key] = row
    LOG["conventions"] = out
    for k_, v_ in out.items():
        print("CONV", k_, v_, flush=True)


def kit(dev):
    import attnhub_torch_sdpa as P
    import attnhub_torch_sdpa._kernels as K
    from attnhub.testing import run_checks

    bf16, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    runs = [(P.TorchSDPABackend, bf16, False), (P.TorchSDPABackend, fp16, True),
            (P.TorchSDPAFlashBackend, bf16, False), (P.TorchSDPACudnnBackend, bf16, False),
            (P.TorchSDPACudnnBackend, fp16, True), (P.TorchSDPAEfficientBackend, bf16, False),
            (P.TorchSDPAEfficientBackend, fp32, True)]
    rows = []
    LOG["kit"] = {}
    for cls, dt, quick in runs:
        t0 = time.perf_counter()
        rep = run_checks(cls(), device=DEV, dtype=dt, quick=quick)
        rows.append((cls.name, dt, rep, time.perf_counter() - t0))
        LOG["kit"][f"{cls.name}-{dt}"] = rep.to_dict()
        save()
        print(f"KIT {rep.summary()} [{str(dt)[6:]}] {time.perf_counter() - t0:.1f}s", flush=True)
    # FlashAttention-2 through the generic (top-left + split) path as well
    K.FLASH.native_bottom_right = False
    try:
        rep = run_checks(P.TorchSDPAFlashBackend(), device=DEV, dtype=torch.bfloat16,
                         select=["causal-*", "fully-*", "gqa-*", "mqa-*", "strided-*",
                                 "backward-*"])
    finally:
        K.FLASH.native_bottom_right = True
    rows.append(("flash(split path)", torch.bfloat16, rep, 0.0))
    LOG["kit"]["flash-split-path"] = rep.to_dict()
    save()
    return rows


def _time(fn, iters=20):
    for _ in range(3):
        fn()
    start = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for a, b in zip(start, end):
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) for a, b in zip(start, end))
    return t[len(t) // 2]


def timing(dev):
    import attnhub
    import attnhub_torch_sdpa as P

    backends = {b.name: b for b in (P.TorchSDPABackend(), P.TorchSDPAFlashBackend(),
                                    P.TorchSDPACudnnBackend(), P.TorchSDPAEfficientBackend())}
    rows = []
    for d in (64, 128):
        for s in (2048, 8192):
            for causal in (False, True):
                b, h = 16384 // s, 16
                q, k, v = (torch.randn(b, s, h, d, device=dev, dtype=torch.bfloat16)
                           .transpose(1, 2) for _ in range(3))
                p = attnhub.Problem(batch=b, heads_q=h, heads_kv=h, seqlen_q=s, seqlen_k=s,
                                    head_dim=d, head_dim_v=d, dtype=torch.bfloat16,
                                    device=dev, causal=causal, scale=d ** -0.5)
                flops = p.flops()
                row = {"d": d, "s": s, "causal": causal}
                row["F.sdpa"] = flops / _time(lambda: F.scaled_dot_product_attention(
                    q, k, v, is_causal=causal)) / 1e9
                for name, be in backends.items():
                    if be.not_supported_reasons(p):
                        row[name] = None
                        continue
                    row[name] = flops / _time(lambda: be.forward(q, k, v, p)) / 1e9
                row["picked"] = backends["torch-sdpa"]._kernel(p).name
                rows.append(row)
                print("TIME", {k_: (round(v_, 1) if isinstance(v_, float) else v_)
                               for k_, v_ in row.items()}, flush=True)
    # causal Sq != Sk (decode-like chunk), GQA: flash native vs cuDNN split
    for sq, sk in ((512, 8192), (2048, 8192)):
        q = torch.randn(4, 32, sq, 128, device=dev, dtype=torch.bfloat16)
        k, v = (torch.randn(4, 8, sk, 128, device=dev, dtype=torch.bfloat16) for _ in range(2))
        p = attnhub.Problem(batch=4, heads_q=32, heads_kv=8, seqlen_q=sq, seqlen_k=sk,
                            head_dim=128, head_dim_v=128, dtype=torch.bfloat16, device=dev,
                            causal=True, scale=128 ** -0.5)
        row = {"d": 128, "s": f"{sq}x{sk} gqa", "causal": True}
        for name, be in backends.items():
            row[name] = None if be.not_supported_reasons(p) else \
                p.flops() / _time(lambda: be.forward(q, k, v, p)) / 1e9
        row["picked"] = backends["torch-sdpa"]._kernel(p).name
        rows.append(row)
        print("TIME", row, flush=True)
    LOG["timing_tflops"] = rows
    save()
    return rows


def main():
    t0 = time.perf_counter()
    dev = env()
    if dev.type == "cuda":
        conventions(dev)
        save()
    kit_rows = kit(dev)
    time_rows = timing(dev) if dev.type == "cuda" else []
    print(f"\n== conformance ({LOG.get('env', {}).get('gpu', DEV)}, "
          f"{time.perf_counter() - t0:.0f}s) ==")
    for name, dt, rep, sec in kit_rows:
        print(f"{name:22s} {str(dt)[6:]:9s} pass {len(rep.passed):3d} fail {len(rep.failed):2d} "
              f"skip {len(rep.skipped):2d} ok={rep.ok}")
        for r in rep.failed:
            w = r.worst
            print(f"   FAIL {r.name}: {r.message[:160]}"
                  + (f" [{w.what} {w.max_err:.2e} > {w.bound:.2e}]" if w else ""))
    skips = {}
    for name, dt, rep, _ in kit_rows:
        for r in rep.skipped:
            skips.setdefault(r.message[:110], []).append(f"{name}:{r.name}")
    for msg, where in list(skips.items())[:12]:
        print(f"   skip x{len(where)} {msg}  e.g. {where[0]}")
    print("\n== forward TFLOP/s, bf16, B*S=16k, H=16 (peers in one run) ==")
    names = ["F.sdpa", "torch-sdpa", "torch-sdpa-flash", "torch-sdpa-cudnn",
             "torch-sdpa-efficient"]
    labels = ["F.sdpa", "auto", "flash", "cudnn", "efficient"]
    print(f"{'d':>4} {'shape':>15} {'causal':>6} " + " ".join(f"{n:>9}" for n in labels)
          + "  picked")
    for r in time_rows:
        cells = " ".join(f"{r[n]:9.1f}" if r.get(n) else f"{'-':>9}" for n in names)
        print(f"{r['d']:>4} {str(r['s']):>15} {str(r['causal']):>6} {cells}  {r['picked']}")


if __name__ == "__main__":
    main()
