"""How far is triton-fa2's forward from plain Triton?  One run on a CUDA GPU, FA-grid
points, TFLOP/s by ``triton.testing.do_bench`` (median):

* the floor kernel (``_floor_kernel``, non-causal points only): pointer loads, in-kernel TMA
  descriptors, descriptors built on the host, and (``--ws``) TMA + warp specialisation;
* triton-fa2: its shipped path, the lean kernel and the general kernel on pointer loads,
  each forced to the floor's configs;
* SDPA's cuDNN.

Every output is checked against cuDNN's (a variant off by more than bf16 rounding is not
timed).  Warp-specialised variants are off by default: on Triton 3.6 / H100 they gave wrong
outputs and the variants timed after them read corrupted inputs (NOTES.md of triton-fa2).

    python benchmarks/triton_floor.py --out $OUT [--dims 64,128] [--seqs 2048,8192,16384] \
        [--causal 0,1] [--ws]
    python benchmarks/triton_floor.py --out DIR --replot RUN.json   # the PNG again
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

#: (BLOCK_M, BLOCK_N, num_warps, num_stages) tried for every floor variant and forced on
#: the lean kernel
CONFIGS = [(128, 64, 4, 2), (128, 64, 4, 3), (128, 128, 4, 2), (128, 64, 8, 3)]
VARIANTS = {"ptr": (False, False), "tma": (True, False), "tma-ws": (True, True)}


def plot(rows: list, path: str, title: str) -> None:
    """One panel per (head dim, seqlen, causal): every timed variant's TFLOP/s, cuDNN's as a
    line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted({(r["d"], r["s"], r.get("causal", False)) for r in rows})
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 5), squeeze=False)
    for ax, (d, s, c) in zip(axes[0], points):
        here = sorted((r for r in rows if (r["d"], r["s"], r.get("causal", False)) == (d, s, c)),
                      key=lambda r: -r["tflops"])
        cudnn = [r["tflops"] for r in here if r["name"] == "cudnn"]
        here = [r for r in here if r["name"] != "cudnn"]
        colors = ["tab:red" if r["name"] == "triton-fa2" else "tab:blue" for r in here]
        ax.barh([r["name"] for r in here], [r["tflops"] for r in here], color=colors)
        if cudnn:
            ax.axvline(cudnn[0], color="k", ls="--", label=f"cuDNN {cudnn[0]:.0f}")
            ax.legend(loc="lower right")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"d{d} S={s}{' causal' if c else ''}")
        ax.set_xlabel("TFLOP/s")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--replot", metavar="JSON", help="only redraw the PNG of a saved run")
    ap.add_argument("--dims", default="64,128")
    ap.add_argument("--seqs", default="2048,8192,16384")
    ap.add_argument("--causal", default="0", help="0, 1 or 0,1 (the floor kernel: 0 only)")
    ap.add_argument("--ws", action="store_true",
                    help="also the warp-specialised variants (Triton 3.6 on the H100: wrong "
                         "outputs, and the variants timed after them read corrupted inputs)")
    args = ap.parse_args()

    if args.replot:
        with open(args.replot) as f:
            run = json.load(f)
        plot(run["rows"], os.path.join(args.out, os.path.basename(args.replot)[:-5] + ".png"),
             f"{run['device']}, triton {run['triton']}, {run['date']}")
        return

    import torch
    import triton

    sys.path.insert(0, os.path.dirname(__file__))
    from _floor_kernel import floor_fwd, floor_fwd_host
    from triton.tools.tensor_descriptor import TensorDescriptor
    from attnhub_hopper.device_check import _sdpa, fa_point
    from attnhub_triton import ops

    ops._ensure_allocator()
    cudnn = _sdpa("CUDNN_ATTENTION")
    rows, lines = [], []

    def log(msg):
        print(msg, flush=True)
        lines.append(msg)

    log(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__} "
        f"{time.strftime('%Y-%m-%d %H:%M')}")
    for D in (int(d) for d in args.dims.split(",")):
        for S, causal in ((int(s), c == "1") for s in args.seqs.split(",")
                          for c in args.causal.split(",")):
            p, q, k, v = fa_point(D, S, causal)
            B, H = q.shape[:2]
            flops = 4 * B * H * S * S * D / (2 if causal else 1)
            ref = cudnn(q, k, v, causal).float()
            tag = f"d{D} s{S}{' causal' if causal else ''}"
            tol = 0.02 * ref.abs().max().item()

            def timed(name, fn):
                try:
                    out = fn()
                    err = (out.float() - ref).abs().max().item()
                except Exception as e:  # noqa: BLE001 - a config the compiler rejects
                    log(f"{tag} {name}: failed: {type(e).__name__}: {str(e)[:200]}")
                    return None
                if not err <= tol:
                    log(f"{tag} {name}: max error {err:.3g} > {tol:.3g}, not timed")
                    return None
                ms = triton.testing.do_bench(fn, warmup=10, rep=40)
                tf = flops / ms * 1e-9
                rows.append(dict(d=D, s=S, causal=causal, name=name, tflops=tf, max_err=err))
                return tf

            base = timed("cudnn", lambda: cudnn(q, k, v, causal))
            shipped = timed("triton-fa2", lambda: ops.flash_forward(q, k, v, p)[0])
            for vname, (tma, ws) in VARIANTS.items():
                if causal or (ws and not args.ws):
                    continue
                for bm, bn, w, s in CONFIGS:
                    def run(bm=bm, bn=bn, w=w, s=s, tma=tma, ws=ws):
                        o = torch.empty_like(q)
                        floor_fwd[(S // bm, B * H)](q, k, v, o, S, p.scale * 1.4426950408889634,
                                                    HEAD_DIM=D, BLOCK_M=bm, BLOCK_N=bn,
                                                    USE_TMA=tma, WARP_SPEC=ws, num_warps=w,
                                                    num_stages=s)
                        return o
                    timed(f"floor-{vname}-{bm}x{bn}w{w}s{s}", run)
            for bm, bn, w, s in ([] if causal else CONFIGS):  # descriptors built on the host
                def host(bm=bm, bn=bn, w=w, s=s):
                    def rows(t, block):
                        return TensorDescriptor.from_tensor(t.view(-1, D), [block, D])
                    o = torch.empty_like(q)
                    floor_fwd_host[(S // bm, B * H)](rows(q, bm), rows(k, bn), rows(v, bn), o, S,
                                                     p.scale * 1.4426950408889634, HEAD_DIM=D,
                                                     BLOCK_M=bm, BLOCK_N=bn, num_warps=w,
                                                     num_stages=s)
                    return o
                timed(f"floor-tma-host-{bm}x{bn}w{w}s{s}", host)
            for (bm, bn, w, s), ws in ([(c, False) for c in CONFIGS]
                                       + [(c, True) for c in CONFIGS[:3] if args.ws]):
                def lean(bm=bm, bn=bn, w=w, s=s, ws=ws):
                    config = ({"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": ws}, w, s)
                    with ops.pinned("lean", config, ATTNHUB_TRITON_LEAN="1"):
                        return ops.flash_forward(q, k, v, p)[0]
                timed(f"lean{'-ws' if ws else ''}-{bm}x{bn}w{w}s{s}", lean)
            for bm, bn, w, s in CONFIGS:  # the general kernel on pointer loads
                def general(bm=bm, bn=bn, w=w, s=s):
                    config = ({"BLOCK_M": bm, "BLOCK_N": bn}, w, s)
                    with ops.pinned("fwd", config, ATTNHUB_TRITON_LEAN="0",
                                ATTNHUB_TRITON_TMA="0"):
                        return ops.flash_forward(q, k, v, p)[0]
                timed(f"general-ptr-{bm}x{bn}w{w}s{s}", general)
            here = [r for r in rows if r["d"] == D and r["s"] == S and r["causal"] == causal]
            for r in sorted(here, key=lambda r: -r["tflops"]):
                log(f"{tag} {r['name']:28s} {r['tflops']:6.0f}"
                    + (f"  x cudnn {r['tflops'] / base:.3f}" if base else "")
                    + (f"  x triton-fa2 {r['tflops'] / shipped:.3f}" if shipped else ""))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "triton_floor.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                       triton=triton.__version__, date=time.strftime("%Y-%m-%d %H:%M"),
                       rows=rows), f, indent=1)
    with open(os.path.join(args.out, "triton_floor_log.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(rows, os.path.join(args.out, "triton_floor.png"),
         f"{torch.cuda.get_device_name()}, triton {triton.__version__}")


if __name__ == "__main__":
    main()
