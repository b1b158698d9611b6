"""Where a short attention call's time goes on a GPU: host (Python + launch) against kernels.

At short sequences a backend can be limited by the host, not the GPU: ``do_bench`` then
measures how fast Python issues the launches.  For each backend and FA-grid point this prints

- ``bench``: ``triton.testing.do_bench`` median of the pinned ``attnhub.attention`` call (what
  the grid reports), forward or forward+backward;
- ``host``: wall time per call of 200 back-to-back calls with no synchronisation (the
  Python/launch cost while the GPU queue is not full);
- ``gpu``: the sum of the call's kernel durations from the torch profiler (CUPTI sees the
  Triton and the CuPy launches alike);

and, with ``--profile``, the top functions of a cProfile of the host path.  One JSON under
``--out``.  Run on the lent GPU (``benchmarks/device_setup.sh`` first).
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import time

import torch

from bwd_passes import kernel_times  # this folder: run as python benchmarks/host_overhead.py


def _point(d, s, dtype=torch.bfloat16, tokens=16384, hidden=2048):
    b, h = tokens // s, hidden // d
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=dtype) for _ in range(3))
    return q, k, v


def _host_us(fn, calls=200):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    host = (time.perf_counter() - t) / calls * 1e6
    torch.cuda.synchronize()
    return host


def _layers(spec):
    """Host µs per forward call at each layer, outermost first: where the time goes."""
    import attnhub
    from attnhub import registry
    from attnhub._validate import make_problem

    d, s, c = (int(x) for x in spec.split(":"))
    q, k, v = _point(d, s)
    problem, qb, kb, vb = make_problem(q, k, v, causal=bool(c))
    out = {}
    layer_fns = {"triton-fa2": [], "hopper-fa3": []}
    try:
        from attnhub_triton import ops as tops
        layer_fns["triton-fa2"] = [
            ("ops.flash_forward (custom op)", lambda: tops.flash_forward(qb, kb, vb, problem)),
            ("ops._forward (no op)", lambda: tops._forward(qb, kb, vb, *tops._op_args(problem)))]
    except ImportError as e:
        print(f"attnhub_triton: {e}")
    try:
        from attnhub_hopper import cuda_fwd
        layer_fns["hopper-fa3"] = [("cuda_fwd.forward", lambda: cuda_fwd.forward(qb, kb, vb,
                                                                               problem))]
    except ImportError as e:
        print(f"attnhub_hopper: {e}")
    for name, inner in layer_fns.items():
        backend = registry.get_backend(name)
        fns = [("attnhub.attention(backend=)",
                lambda: attnhub.attention(q, k, v, causal=bool(c), backend=name)),
               ("make_problem", lambda: make_problem(q, k, v, causal=bool(c))),
               ("backend.forward", lambda: backend.forward(qb, kb, vb, problem))] + inner
        o, lse = backend.forward(qb, kb, vb, problem)
        do = torch.randn_like(o)
        fns.append(("backend.backward", lambda: backend.backward(do, qb, kb, vb, o, lse,
                                                                 problem)))
        for label, fn in fns:
            us = min(_host_us(fn) for _ in range(3))
            out[f"{name} {label}"] = us
            print(f"layers d{d} s{s} c{c} {name:10s} {label:32s} host {us:7.1f} us", flush=True)
    empty = min(_host_us(lambda: torch.empty(q.shape, dtype=q.dtype, device=q.device))
                for _ in range(3))
    out["torch.empty on cuda"] = empty
    print(f"layers torch.empty on cuda host {empty:.1f} us")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="triton-fa2,hopper-fa3,torch-sdpa")
    ap.add_argument("--points", default="64:512:1,64:1024:1,64:512:0,128:512:1,256:512:1",
                    help="d:seqlen:causal,...")
    ap.add_argument("--profile", default="triton-fa2:64:512:1,hopper-fa3:128:512:1:bwd",
                    help="backend:d:seqlen:causal[:bwd],... whose host path gets a cProfile")
    ap.add_argument("--layers", default="128:512:1",
                    help="d:seqlen:causal where each layer's host cost is measured ('' none)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()

    import triton

    import attnhub

    rows = []
    for spec in filter(None, args.points.split(",")):
        d, s, c = (int(x) for x in spec.split(":"))
        q, k, v = _point(d, s)
        do = torch.randn_like(q)
        fl = 4 * q.shape[0] * q.shape[1] * s * s * d / (2 if c else 1)
        for name in args.backends.split(","):
            for direction in ("fwd", "bwd"):
                if direction == "fwd":
                    def fn(name=name):
                        return attnhub.attention(q, k, v, causal=bool(c), backend=name)
                else:
                    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))

                    def fn(name=name, qg=qg, kg=kg, vg=vg):
                        o = attnhub.attention(qg, kg, vg, causal=bool(c), backend=name)
                        o.backward(do)
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(f"{name} d{d} s{s} c{c} {direction}: {type(e).__name__}: {e}")
                    continue
                bench_ms = triton.testing.do_bench(fn, warmup=10, rep=40)
                host, gpu = _host_us(fn), sum(kernel_times(fn, 20).values())
                flops = fl * (3.5 if direction == "bwd" else 1)
                row = dict(backend=name, d=d, seqlen=s, causal=bool(c), direction=direction,
                           bench_us=bench_ms * 1e3, host_us=host, gpu_us=gpu,
                           tflops_bench=flops / bench_ms / 1e9,
                           tflops_gpu=flops / gpu / 1e6 if gpu else None)
                rows.append(row)
                print(f"{name:11s} d{d:3d} s{s:5d} {'causal' if c else 'full  '} {direction} "
                      f"bench {row['bench_us']:8.1f} us  host {host:8.1f} us  "
                      f"gpu {gpu:8.1f} us  (fwd+bwd TFLOP/s at bench {row['tflops_bench']:.0f}"
                      f", at gpu {row['tflops_gpu'] or 0:.0f})", flush=True)
    prof_text = ""
    for spec in filter(None, args.profile.split(",")):
        name, d, s, c, *bwd = spec.split(":")
        q, k, v = _point(int(d), int(s))
        if bwd:
            q, k, v = (t.requires_grad_() for t in (q, k, v))
            do = torch.randn_like(q)

        def fn(name=name, q=q, k=k, v=v, c=c, bwd=bwd):
            o = attnhub.attention(q, k, v, causal=c == "1", backend=name)
            if bwd:
                o.backward(do)
        fn()
        torch.cuda.synchronize()
        pr = cProfile.Profile()
        # backward runs on autograd's device thread, which cProfile does not see
        with torch.autograd.set_multithreading_enabled(False):
            pr.enable()
            for _ in range(200):
                fn()
            pr.disable()
        torch.cuda.synchronize()
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(25)
        pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(35)
        text = f"== cProfile {spec} (200 calls)\n" + buf.getvalue()
        print(text)
        prof_text += text
    layers = _layers(args.layers) if args.layers else {}
    with open(os.path.join(args.out, "host_overhead.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                       date=time.strftime("%Y-%m-%d %H:%M"), rows=rows, layers=layers,
                       profile=args.profile, cprofile=prof_text), f, indent=1)


if __name__ == "__main__":
    main()
