"""One device call: GPU tests of triton-fa2, then its speed next to torch SDPA's kernels.

    python backends/attnhub_triton/device_check.py [--out DIR] [--skip-tests] [--skip-bench]

Phases (each guarded, logs under --out):
  1. tests   the ``-m gpu`` selection of tests/backends/test_triton_fa2.py in parallel
             pytest shards (compilation is CPU-bound; the shards share Triton's disk cache),
             with ATTNHUB_TRITON_AUTOTUNE=0 except where a test pins configs itself.
  2. warm    every autotuning candidate of the benchmark keys compiled in a process pool,
             so the autotuner below only loads cached binaries.
  3. bench   FA grid points (batch = 16384 // S, heads = 2048 // D, bf16), forward and
             backward, triton-fa2 (autotuned) vs SDPA FLASH / CUDNN / EFFICIENT, timed in
             this one process with ``triton.testing.do_bench`` (median), fresh inputs.
  4. ws      (--warp-spec) warp-specialised forward configs, in a subprocess (the
             compiler can abort on them), timed against the autotuned forward.
Prints a table last; JSON next to the logs.
"""

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_FILE = os.path.join(ROOT, "tests", "backends", "test_triton_fa2.py")
SHARDS = ["d32 or d40", "d64 and not every", "d72 or d96", "d128 and not every",
          "d160 or d192", "d256", "every and d64 and not causal", "every and d64 and causal",
          "every and d128 and not causal", "every and d128 and causal", "compile or graph"]
BENCH_DIMS = (64, 128, 256)
BENCH_SEQLENS = (1024, 4096, 16384)


def log(*args):
    print(*args, flush=True)


# -- 1. tests ---------------------------------------------------------------------------------

def run_tests(out: str, timeout: float) -> list:
    # TRITON_INTERPRET=0: tests/conftest.py defaults it to 1 (for CPU CI) with setdefault.
    env = dict(os.environ, ATTNHUB_TRITON_AUTOTUNE="0", PYTHONUNBUFFERED="1",
               TRITON_INTERPRET="0")
    logdir = os.path.join("/tmp", "attnhub_triton_tests")
    os.makedirs(logdir, exist_ok=True)
    procs = []
    for i, expr in enumerate(SHARDS):
        path = os.path.join(logdir, f"tests_{i:02d}.log")  # joined into one file below
        f = open(path, "w")
        cmd = [sys.executable, "-m", "pytest", TEST_FILE, "-m", "gpu", "-k", expr, "-q",
               "-p", "no:cacheprovider", "-rfE", "--durations=3"]
        procs.append((expr, path, f, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                                       env=env, cwd=ROOT)))
    deadline = time.time() + timeout
    results = []
    for expr, path, f, p in procs:
        try:
            p.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        f.close()
        tail = open(path).read().strip().splitlines()
        summary = tail[-1] if tail else "(no output)"
        results.append({"shard": expr, "rc": p.returncode, "summary": summary})
        log(f"[tests] {expr!r}: rc={p.returncode} {summary}")
        if p.returncode not in (0, 5):
            failed = [ln for ln in tail if ln.startswith(("FAILED", "ERROR"))]
            for ln in failed[:10]:
                log("    ", ln[:300])
    with open(os.path.join(out, "tests.log"), "w") as joined:  # $OUT brings back 8 files
        for expr, path, _, _ in procs:
            joined.write(f"===== shard {expr!r} =====\n" + open(path).read() + "\n")
    return results


# -- 2. warm the compile cache ------------------------------------------------------------------

def _bench_problem(d, s, causal, device="cuda", batch=None, heads=None):
    import torch
    from attnhub.contract import Problem
    b = batch or max(1, 16384 // s)
    h = heads or 2048 // d
    return Problem(batch=b, heads_q=h, heads_kv=h, seqlen_q=s, seqlen_k=s, head_dim=d,
                   head_dim_v=d, dtype=torch.bfloat16, device=torch.device(device),
                   causal=causal, scale=d ** -0.5)


def _compile_job(job):
    """Worker: run one pinned config on a small problem with the benchmark's
    specialisation (16-divisible strides), which compiles it into the disk cache."""
    kind, d, causal, config = job
    os.environ["ATTNHUB_TRITON_AUTOTUNE"] = "0"
    import torch
    from attnhub_triton import ops
    ops.FORCED_CONFIGS.clear()
    ops.FORCED_CONFIGS[kind] = config
    p = _bench_problem(d, 1024, causal, batch=1, heads=2)
    q, k, v = (torch.randn(1, 2, 1024, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    t = time.time()
    try:
        o, lse = ops.flash_forward(q, k, v, p)
        if kind != "fwd":
            ops.flash_backward(torch.randn_like(o), q, k, v, o, lse, p)
        torch.cuda.synchronize()
        return job, time.time() - t, None
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return job, time.time() - t, f"{type(e).__name__}: {str(e)[:200]}"


def warm_cache(workers: int) -> dict:
    import multiprocessing as mp
    from attnhub_triton import ops
    jobs = []
    for d in BENCH_DIMS:
        for causal in (False, True):
            p = _bench_problem(d, 4096, causal, device="cpu")
            for kind in ("fwd", "dq", "dkdv"):
                jobs += [(kind, d, causal, c) for c in ops.candidate_configs(kind, p)]
    t = time.time()
    errors = []
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        for job, dt, err in pool.map(_compile_job, jobs):
            if err:
                errors.append((job, err))
    log(f"[warm] {len(jobs)} configs compiled in {time.time() - t:.0f}s, {len(errors)} failed")
    for job, err in errors[:10]:
        log("    ", job, err)
    return {"jobs": len(jobs), "seconds": time.time() - t, "errors": [str(e) for e in errors]}


# -- 3. benchmark --------------------------------------------------------------------------------

def bench(out: str) -> list:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench
    from attnhub_triton import ops

    def timed(fn):
        return do_bench(fn, warmup=25, rep=100, return_mode="median")

    peers = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION}
    rows = []
    for d in BENCH_DIMS:
        for s in BENCH_SEQLENS:
            for causal in (False, True):
                p = _bench_problem(d, s, causal)
                shape = (p.batch, p.heads_q, s, d)
                q, k, v, do = (torch.randn(shape, device="cuda", dtype=torch.bfloat16)
                               for _ in range(4))
                fl_f, fl_b = p.flops("fwd") / 1e12, p.flops("bwd") / 1e12
                row = {"d": d, "s": s, "causal": causal, "batch": p.batch, "heads": p.heads_q}
                t0 = time.time()
                o, lse = ops.flash_forward(q, k, v, p)  # autotunes (outside the timing)
                ops.flash_backward(do, q, k, v, o, lse, p)
                row["tune_s"] = time.time() - t0
                row["triton_fwd"] = fl_f / (timed(lambda: ops.flash_forward(q, k, v, p)) * 1e-3)
                row["triton_bwd"] = fl_b / (timed(
                    lambda: ops.flash_backward(do, q, k, v, o, lse, p)) * 1e-3)
                # Spot check against SDPA (flash): the timed kernels compute the right thing.
                qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    ref = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                    ref_dq, = torch.autograd.grad(ref, (qg,), do)
                dq, _, _ = ops.flash_backward(do, q, k, v, o, lse, p)
                row["max_err_o"] = (o.float() - ref.float()).abs().max().item()
                row["max_err_dq"] = (dq.float() - ref_dq.float()).abs().max().item()
                del qg, kg, vg, ref, ref_dq, dq
                for name, kind in peers.items():
                    try:
                        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                        with sdpa_kernel(kind):
                            fwd = lambda: F.scaled_dot_product_attention(  # noqa: E731
                                qg, kg, vg, is_causal=causal)
                            ms = timed(fwd)
                            og = fwd()
                            msb = timed(lambda: torch.autograd.grad(
                                og, (qg, kg, vg), do, retain_graph=True))
                        row[f"{name}_fwd"] = fl_f / (ms * 1e-3)
                        row[f"{name}_bwd"] = fl_b / (msb * 1e-3)
                    except Exception as e:  # noqa: BLE001 - a peer that does not run here
                        row[f"{name}_fwd"] = row[f"{name}_bwd"] = None
                        row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
                row["configs"] = _best_configs()
                rows.append(row)
                log("[bench]", json.dumps({k: (round(v, 1) if isinstance(v, float) else v)
                                           for k, v in row.items() if k != "configs"}))
                del q, k, v, do, o, lse
                torch.cuda.empty_cache()
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "triton": __import__("triton").__version__, "date": time.strftime("%F %T"),
                   "rows": rows}, f, indent=1)
    return rows


def _best_configs():
    from attnhub_triton import ops
    out = {}
    for name, tuned in (("fwd", ops._TUNED_FWD), ("dq", ops._TUNED_DQ), ("dkdv", ops._TUNED_DKDV)):
        if tuned.cache:
            key = list(tuned.cache)[-1]
            c = tuned.cache[key]
            out[name] = f"{c.kwargs.get('BLOCK_M')}x{c.kwargs.get('BLOCK_N')} w{c.num_warps} s{c.num_stages}"
    return out


def print_table(rows):
    def fmt(x):
        return f"{x:6.0f}" if isinstance(x, (int, float)) and x is not None else "   n/a"

    def ratio(a, b):
        return f"{a / b:5.2f}" if a and b else "  n/a"

    log("\nTFLOP/s (bf16, H100), batch=16384//S, heads=2048//D; ratios = triton / peer")
    log(f"{'D':>4} {'S':>6} {'causal':>6} | {'dir':>3} {'triton':>6} {'cudnn':>6} {'flash':>6} "
        f"{'effic':>6} | {'/cudnn':>6} {'/flash':>6} | configs | max|triton - sdpa flash|")
    for r in rows:
        for dirn in ("fwd", "bwd"):
            t = r[f"triton_{dirn}"]
            cfg = r["configs"].get("fwd" if dirn == "fwd" else "dq", "") + \
                ("" if dirn == "fwd" else " / " + r["configs"].get("dkdv", ""))
            err = r.get("max_err_o" if dirn == "fwd" else "max_err_dq")
            log(f"{r['d']:>4} {r['s']:>6} {str(r['causal']):>6} | {dirn:>3} {fmt(t)} "
                f"{fmt(r.get('cudnn_' + dirn))} {fmt(r.get('flash_' + dirn))} "
                f"{fmt(r.get('efficient_' + dirn))} | {ratio(t, r.get('cudnn_' + dirn)):>6} "
                f"{ratio(t, r.get('flash_' + dirn)):>6} | {cfg} | err {err:.1e}")


# -- 4. warp specialisation (opt-in) -----------------------------------------------------------------

WS_SNIPPET = r"""
import os, sys, json, torch
os.environ["ATTNHUB_TRITON_WARP_SPEC"] = "1"
sys.path[:0] = [sys.argv[1]]
from device_check import _bench_problem
from attnhub_triton import ops
from triton.testing import do_bench
res = {}
for d in (64, 128):
    p = _bench_problem(d, 4096, False)
    q, k, v = (torch.randn(p.batch, p.heads_q, 4096, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ref, _ = ops.flash_forward(q, k, v, p)
    for bn in (64, 128):
        for s in (2, 3):
            cfg = ({"BLOCK_M": 128, "BLOCK_N": bn, "WARP_SPEC": True}, 4, s)
            ops.FORCED_CONFIGS["fwd"] = cfg
            try:
                o, _ = ops.flash_forward(q, k, v, p)
                err = (o.float() - ref.float()).abs().max().item()
                ms = do_bench(lambda: ops.flash_forward(q, k, v, p), return_mode="median")
                res[f"d{d} 128x{bn} s{s}"] = (p.flops() / 1e12 / (ms * 1e-3), err)
            except Exception as e:
                res[f"d{d} 128x{bn} s{s}"] = str(e)[:100]
            print(res, flush=True)
print("WS_RESULT", json.dumps(res))
"""


def try_warp_spec(timeout: float) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run([sys.executable, "-c", WS_SNIPPET, here], capture_output=True,
                           text=True, timeout=timeout)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("WS_RESULT")]
        return lines[-1] if lines else f"rc={r.returncode} {r.stderr[-400:]}"
    except subprocess.TimeoutExpired:
        return "timed out"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/attnhub_triton_check"))
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--test-timeout", type=float, default=200)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--warp-spec", action="store_true", help="also try phase 4")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import torch
    import triton
    log(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
    summary = {}
    t = time.time()
    if not args.skip_tests:
        summary["tests"] = run_tests(args.out, args.test_timeout)
        log(f"[tests] {time.time() - t:.0f}s")
    if not args.skip_bench:
        t = time.time()
        try:
            summary["warm"] = warm_cache(args.workers)
        except Exception as e:  # noqa: BLE001
            log("[warm] failed:", repr(e)[:300])
        t = time.time()
        rows = bench(args.out)
        log(f"[bench] {time.time() - t:.0f}s")
        if args.warp_spec:
            t = time.time()
            summary["warp_spec"] = try_warp_spec(90)
            log(f"[ws] {time.time() - t:.0f}s {summary['warp_spec']}")
        print_table(rows)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    for r in summary.get("tests", []):
        log(f"[tests] {r['shard']!r}: {r['summary']}")


if __name__ == "__main__":
    main()
