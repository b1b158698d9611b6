"""Where triton-fa2's forward loses time on short problems (the FA grid at 512-1k keys).

For each point it times, on the same inputs: the lean and the general forward kernels
(ATTNHUB_TRITON_LEAN=1 / 0) through ``flash_forward`` eagerly (``do_bench``) and replayed
from a CUDA graph (``do_bench_cudagraph``: no host work), and cuDNN.  Eager minus graph is
the host's share (launch, descriptors, Python); graph time alone is the kernels'.

    python benchmarks/tri_short.py --out $OUT --points 64:512:causal,64:512:full
"""
from __future__ import annotations

import argparse
import json
import os
import time
from unittest import mock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="64:512:causal,64:512:full,64:1024:causal,"
                    "128:512:causal,128:512:full,256:512:causal,256:512:full")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--name", default="tri_short")
    args = ap.parse_args()

    import torch
    import triton
    from triton.testing import do_bench, do_bench_cudagraph
    from attnhub_hopper.device_check import _sdpa, fa_point
    from attnhub_triton.ops import flash_forward

    rows, lines = [], []
    for point in args.points.split(","):
        d, s, mode = point.split(":")
        D, S, causal = int(d), int(s), mode == "causal"
        p, q, k, v = fa_point(D, S, causal)
        B, H = q.shape[:2]
        fl = 4 * B * H * S * S * D / (2 if causal else 1)
        row = dict(head_dim=D, seqlen=S, causal=causal, batch=B, heads=H)
        ref = None
        for name, env in (("lean", {"ATTNHUB_TRITON_LEAN": "1"}),
                          ("general", {"ATTNHUB_TRITON_LEAN": "0"})):
            with mock.patch.dict(os.environ, env):
                fn = lambda: flash_forward(q, k, v, p)  # noqa: E731
                o = fn()[0]
                if ref is None:
                    ref = o
                else:  # the two kernels must agree to bf16 rounding
                    diff = (o.float() - ref.float()).abs().max().item()
                    row[f"{name}_vs_lean_maxdiff"] = diff
                eager = do_bench(fn, warmup=25, rep=100)
                graph = do_bench_cudagraph(fn, rep=100)
            row[name] = dict(eager_ms=eager, graph_ms=graph,
                             eager_tflops=fl / eager / 1e9, graph_tflops=fl / graph / 1e9)
        cud = _sdpa("CUDNN_ATTENTION")
        t = do_bench(lambda: cud(q, k, v, causal), warmup=25, rep=100)
        row["cudnn"] = dict(ms=t, tflops=fl / t / 1e9)
        rows.append(row)
        line = (f"d{D} s{S} {mode:6s} B{B} H{H}: lean eager {row['lean']['eager_tflops']:.0f} "
                f"graph {row['lean']['graph_tflops']:.0f} | general eager "
                f"{row['general']['eager_tflops']:.0f} graph {row['general']['graph_tflops']:.0f}"
                f" | cudnn {row['cudnn']['tflops']:.0f} TFLOP/s"
                f" (lean {row['lean']['eager_ms'] * 1e3:.0f}/{row['lean']['graph_ms'] * 1e3:.0f}"
                f" us)")
        print(line, flush=True)
        lines.append(line)
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                triton=triton.__version__, date=time.strftime("%Y-%m-%d %H:%M"))
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
