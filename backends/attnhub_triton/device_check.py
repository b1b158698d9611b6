"""One device call: GPU tests of triton-fa2, then its speed next to torch SDPA's kernels.

    python backends/attnhub_triton/device_check.py [--out DIR] [--skip-tests] [--skip-bench]
    python backends/attnhub_triton/device_check.py --bwd [--test-select atomic]
    python backends/attnhub_triton/device_check.py --lean [--warp-spec] [--budget S] [--dims 256]
    python backends/attnhub_triton/device_check.py --lean-bwd [--budget S] [--families parts]

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

With --lean (ATTNHUB_TRITON_AUTOTUNE=0), the lean forward instead: its compile jobs in a
process pool, correctness on the GPU (tolerance rule, NaN-poisoned outputs, awkward shapes,
both dtypes, every timed config, the backward from its O/LSE), registers and spills of each
compiled forward, then TFLOP/s of the lean configs (LEAN_SWEEP) vs the general forward vs
SDPA cuDNN and flash at LEAN_POINTS, one process; --warp-spec adds the lean kernel with
``warp_specialize`` in a subprocess.

With --lean-bwd (ATTNHUB_TRITON_AUTOTUNE=0), the same for the split backward's lean dK/dV
kernel (LEAN_BWD_SWEEP), the 4-warp dQ tiles (DQ_SWEEP), the Δ pre-pass
(ATTNHUB_TRITON_DELTA_PREPASS=1, d64-d256) and the two-part dK/dV pass (PARTS_SWEEP,
ATTNHUB_TRITON_DKDV_PARTS=1, d128/d256); --families picks some of them: compile jobs in a pool,
correctness with NaN-poisoned gradients, registers/spills, then the split backward's
TFLOP/s with each of them vs the default kernels vs SDPA cuDNN and flash (LEAN_BWD_POINTS).

With --bwd, phases 2-4 give way to the backward-variant check: the tests (filtered by
--test-select) and the compilation of every kernel timed below run side by side, then
  bwd-sweep  tile configs of the atomic variant's kernel (BWD_SWEEP) at a few points,
             TMA-reduce and element-atomic dQ, fixed configs (no autotuning);
  bwd-grid   backward "split" vs "atomic" (best swept config per head dim) vs SDPA CUDNN
             and FLASH over the grid, same process, do_bench medians; agreement of the
             two variants and run-to-run spread of the atomic one's dQ.
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

def start_tests(select: str = "") -> list:
    """Start the pytest shards (``select``: an extra -k expression AND-ed to each)."""
    # TRITON_INTERPRET=0: tests/conftest.py defaults it to 1 (for CPU CI) with setdefault.
    env = dict(os.environ, ATTNHUB_TRITON_AUTOTUNE="0", PYTHONUNBUFFERED="1",
               TRITON_INTERPRET="0")
    logdir = os.path.join("/tmp", "attnhub_triton_tests")
    os.makedirs(logdir, exist_ok=True)
    procs = []
    for i, expr in enumerate(SHARDS):
        if select:
            expr = f"({expr}) and ({select})"
        path = os.path.join(logdir, f"tests_{i:02d}.log")  # joined into one file below
        f = open(path, "w")
        cmd = [sys.executable, "-m", "pytest", TEST_FILE, "-m", "gpu", "-k", expr, "-q",
               "-p", "no:cacheprovider", "-rfE", "--durations=3"]
        procs.append((expr, path, f, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                                       env=env, cwd=ROOT)))
    return procs


def run_tests(out: str, timeout: float, select: str = "", procs=None) -> list:
    procs = procs if procs is not None else start_tests(select)
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
    specialisation (16-divisible strides), which compiles it into the disk cache.
    ``config`` None: the fixed default; kind "dkdvq" runs the atomic backward
    (``job[4]``, optional: its dQ reduction mode), "dq"/"dkdv" the split one."""
    kind, d, causal, config = job[:4]
    os.environ["ATTNHUB_TRITON_AUTOTUNE"] = "0"
    import torch
    from attnhub_triton import ops
    ops.FORCED_CONFIGS.clear()
    if config is not None:
        ops.FORCED_CONFIGS[kind] = config
    ops.DQ_REDUCE = job[4] if len(job) > 4 else None
    p = _bench_problem(d, 1024, causal, batch=1, heads=2)
    q, k, v = (torch.randn(1, 2, 1024, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    t = time.time()
    try:
        o, lse = ops.flash_forward(q, k, v, p)
        if kind != "fwd":
            ops.flash_backward(torch.randn_like(o), q, k, v, o, lse, p,
                               variant="atomic" if kind == "dkdvq" else "split")
        torch.cuda.synchronize()
        return job, time.time() - t, None
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return job, time.time() - t, f"{type(e).__name__}: {str(e)[:200]}"


def warm_cache(workers: int, jobs=None, job_fn=None) -> dict:
    import multiprocessing as mp
    from attnhub_triton import ops
    if jobs is None:
        jobs = []
        for d in BENCH_DIMS:
            for causal in (False, True):
                p = _bench_problem(d, 4096, causal, device="cpu")
                for kind in ("fwd", "dq", "dkdv"):
                    jobs += [(kind, d, causal, c) for c in ops.candidate_configs(kind, p)]
    t = time.time()
    errors = []
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        for job, dt, err in pool.map(job_fn or _compile_job, jobs):
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


# -- backward variants ------------------------------------------------------------------------------

def _cfg(bm, bn, s):
    return ({"BLOCK_M": bm, "BLOCK_N": bn}, 8, s)


# Atomic-variant tiles tried per head dim (BLOCK_M query step x BLOCK_N keys, stages); the
# first entry is the fixed default.  Run of 2026-11-23 (NOTES.md): the first won everywhere.
BWD_SWEEP = {
    64: [_cfg(64, 128, 2), _cfg(32, 128, 2)],
    128: [_cfg(64, 128, 2), _cfg(32, 128, 2), _cfg(32, 64, 2)],
    256: [_cfg(32, 64, 2), _cfg(32, 32, 2)],
}
POINTER_DIMS = (128, 256)  # element-atomic dQ timed against TMA reduce for these
SWEEP_POINTS = ((4096, False), (16384, False), (16384, True))


def _cfg_name(c):
    return f"{c[0]['BLOCK_M']}x{c[0]['BLOCK_N']} s{c[2]}"


def bwd_jobs() -> list:
    """Compile jobs for everything bench_bwd times (fixed configs)."""
    jobs = []
    for d in BENCH_DIMS:
        for causal in (False, True):
            jobs.append(("dkdv", d, causal, None))  # forward + split backward defaults
            jobs += [("dkdvq", d, causal, c) for c in BWD_SWEEP[d]]
            if d in POINTER_DIMS:
                jobs.append(("dkdvq", d, causal, BWD_SWEEP[d][0], "pointer"))
    return jobs


def _sdpa_backward_peers(row: dict, q, k, v, do, causal: bool, tflop: float, timed) -> None:
    """row["cudnn"], row["flash"]: TFLOP/s of SDPA's cuDNN and flash backward through
    autograd on the same inputs (None, with the error, where a peer does not run)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for name, kind in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                       ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
            with sdpa_kernel(kind):
                og = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                row[name] = tflop / (timed(lambda: torch.autograd.grad(
                    og, (qg, kg, vg), do, retain_graph=True)) * 1e-3)
            del qg, kg, vg, og
        except Exception as e:  # noqa: BLE001 - a peer that does not run here
            row[name] = None
            row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:120]}"


def bench_bwd(out: str, deadline: float) -> dict:
    import torch
    from triton.testing import do_bench
    from attnhub_triton import ops

    def timed(fn):
        return do_bench(fn, warmup=20, rep=80, return_mode="median")

    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "triton": __import__("triton").__version__, "date": time.strftime("%F %T"),
              "sweep": [], "grid": []}

    def save():
        with open(os.path.join(out, "bwd.json"), "w") as f:
            json.dump(result, f, indent=1)

    def inputs(d, s, causal):
        p = _bench_problem(d, s, causal)
        shape = (p.batch, p.heads_q, s, d)
        q, k, v, do = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(4))
        o, lse = ops.flash_forward(q, k, v, p)
        return p, q, k, v, do, o, lse

    def atomic_ms(p, q, k, v, do, o, lse, config, reduce=None):
        ops.FORCED_CONFIGS.clear()
        ops.FORCED_CONFIGS["dkdvq"] = config
        ops.DQ_REDUCE = reduce
        try:
            return timed(lambda: ops.flash_backward(do, q, k, v, o, lse, p, variant="atomic"))
        except Exception as e:  # noqa: BLE001 - a config that does not compile here
            log(f"[bwd] {_cfg_name(config)} {reduce}: {type(e).__name__}: {str(e)[:160]}")
            return float("inf")
        finally:
            ops.FORCED_CONFIGS.clear()
            ops.DQ_REDUCE = None

    # 1. tile sweep of the atomic kernel
    best = {d: BWD_SWEEP[d][0] for d in BENCH_DIMS}
    for d in BENCH_DIMS:
        times = {}
        for s, causal in SWEEP_POINTS:
            if time.time() > deadline - 60:  # keep a minute for the grid
                log("[sweep] out of time")
                break
            p, q, k, v, do, o, lse = inputs(d, s, causal)
            tfl = p.flops("bwd") / 1e12
            split = timed(lambda: ops.flash_backward(do, q, k, v, o, lse, p, variant="split"))
            row = {"d": d, "s": s, "causal": causal, "split": tfl / (split * 1e-3)}
            for c in BWD_SWEEP[d]:
                ms = atomic_ms(p, q, k, v, do, o, lse, c)
                times.setdefault(_cfg_name(c), []).append(ms / split)
                row[_cfg_name(c)] = tfl / (ms * 1e-3)
            if d in POINTER_DIMS:
                row[_cfg_name(BWD_SWEEP[d][0]) + " ptr"] = tfl / (atomic_ms(
                    p, q, k, v, do, o, lse, BWD_SWEEP[d][0], "pointer") * 1e-3)
            result["sweep"].append(row)
            log("[sweep]", json.dumps({k: (round(x, 1) if isinstance(x, float) else x)
                                       for k, x in row.items()}))
            del q, k, v, do, o, lse
            save()
        if not times:
            continue
        # best config: lowest mean time relative to split over the sweep points
        name = min(times, key=lambda n: sum(times[n]) / len(times[n]))
        best[d] = next(c for c in BWD_SWEEP[d] if _cfg_name(c) == name)
        log(f"[sweep] d{d}: best {name}")
    result["best"] = {d: _cfg_name(c) for d, c in best.items()}

    # 2. the grid
    for d in BENCH_DIMS:
        for s in BENCH_SEQLENS:
            for causal in (False, True):
                if time.time() > deadline:
                    log("[grid] out of time")
                    save()
                    return result
                p, q, k, v, do, o, lse = inputs(d, s, causal)
                tfl = p.flops("bwd") / 1e12
                row = {"d": d, "s": s, "causal": causal, "atomic_config": _cfg_name(best[d])}
                row["split"] = tfl / (timed(lambda: ops.flash_backward(
                    do, q, k, v, o, lse, p, variant="split")) * 1e-3)
                row["atomic"] = tfl / (atomic_ms(p, q, k, v, do, o, lse, best[d]) * 1e-3)
                # agreement of the two variants, and the atomic one's run-to-run spread
                ops.FORCED_CONFIGS["dkdvq"] = best[d]
                a1 = ops.flash_backward(do, q, k, v, o, lse, p, variant="atomic")
                a2 = ops.flash_backward(do, q, k, v, o, lse, p, variant="atomic")
                ops.FORCED_CONFIGS.clear()
                sp = ops.flash_backward(do, q, k, v, o, lse, p, variant="split")
                row["max_diff_vs_split"] = max((x.float() - y.float()).abs().max().item()
                                               for x, y in zip(a1, sp))
                row["max_abs_grad"] = max(y.float().abs().max().item() for y in sp)
                row["dq_run_to_run"] = (a1[0].float() - a2[0].float()).abs().max().item()
                del a1, a2, sp
                _sdpa_backward_peers(row, q, k, v, do, causal, tfl, timed)
                result["grid"].append(row)
                log("[grid]", json.dumps({k: (round(x, 4) if isinstance(x, float) else x)
                                          for k, x in row.items()}))
                del q, k, v, do, o, lse
                torch.cuda.empty_cache()
                save()
    return result


def print_bwd_table(result):
    def r(a, b):
        return f"{a / b:5.2f}" if a and b else "  n/a"

    log("\nBackward TFLOP/s (bf16), batch=16384//S, heads=2048//D, one process")
    log(f"{'D':>4} {'S':>6} {'causal':>6} | {'split':>6} {'atomic':>6} {'cudnn':>6} {'flash':>6} | "
        f"{'at/cud':>6} {'at/fl':>6} {'sp/cud':>6} | atomic cfg | diff/max run2run")
    for x in result.get("grid", []):
        log(f"{x['d']:>4} {x['s']:>6} {str(x['causal']):>6} | {x['split']:6.0f} {x['atomic']:6.0f} "
            f"{x['cudnn'] or 0:6.0f} {x['flash'] or 0:6.0f} | {r(x['atomic'], x['cudnn']):>6} "
            f"{r(x['atomic'], x['flash']):>6} {r(x['split'], x['cudnn']):>6} | "
            f"{x['atomic_config']} | {x['max_diff_vs_split']:.1e}/{x['max_abs_grad']:.1e} "
            f"{x['dq_run_to_run']:.1e}")


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


def run_ws_snippet(snippet: str, timeout: float) -> str:
    """Run a warp-specialisation snippet in a subprocess (a failing compile can abort the
    process); its last ``WS_RESULT`` line, or why there is none."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run([sys.executable, "-c", snippet, here], capture_output=True,
                           text=True, timeout=timeout)
        log(r.stdout[-3000:])
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("WS_RESULT")]
        return lines[-1] if lines else f"rc={r.returncode} {r.stderr[-600:]}"
    except subprocess.TimeoutExpired as e:
        return f"timed out; partial: {(e.stdout or b'')[-2000:]!r}"


# -- 5. the lean forward (--lean) ------------------------------------------------------------------

DEVICE = "cuda"  # a CPU dry run of this section (interpreter, tiny shapes) sets "cpu"


def _lcfg(bm, bn, w, s):
    return ({"BLOCK_M": bm, "BLOCK_N": bn}, w, s)


# Lean configs timed per head dim; the first is the fixed default in ops._DEFAULTS["lean"].
LEAN_SWEEP = {
    64: [_lcfg(128, 64, 4, 3), _lcfg(128, 64, 4, 2), _lcfg(128, 128, 4, 2), _lcfg(128, 128, 4, 3)],
    128: [_lcfg(128, 64, 4, 2), _lcfg(128, 64, 4, 3), _lcfg(128, 32, 4, 4), _lcfg(64, 64, 4, 2),
          _lcfg(128, 64, 8, 3)],
    256: [_lcfg(64, 32, 4, 2), _lcfg(128, 64, 8, 2)],  # H100 2026-12-05: both lose to the general kernel
}
LEAN_DIMS = [64, 128, 256]  # --dims narrows it
LEAN_POINTS = [(s, c) for s in (2048, 16384) for c in (False, True)]  # per head dim
# Correctness shapes: (Sq, Sk, heads "mha"/"gqa"/"mqa", causal, layout, batch)
LEAN_SHAPES = [(113, 203, "gqa", False, "bhsd", 2), (113, 203, "gqa", True, "bshd", 1),
               (203, 113, "mha", True, "bhsd", 2), (1023, 1024, "gqa", True, "bshd", 1),
               (1, 4096, "mqa", True, "bhsd", 1), (4096, 1, "gqa", True, "bhsd", 1),
               (1000, 1000, "mha", False, "bshd", 1)]
_HEADS = {"mha": (8, 8), "gqa": (8, 2), "mqa": (8, 1)}


def _cfg_label(c):
    return f"{c[0]['BLOCK_M']}x{c[0]['BLOCK_N']} w{c[1]} s{c[2]}"


def _problem(d, sq, sk, heads, causal, dtype, batch=1):
    import torch
    from attnhub.contract import Problem
    hq, hk = _HEADS[heads]
    return Problem(batch=batch, heads_q=hq, heads_kv=hk, seqlen_q=sq, seqlen_k=sk, head_dim=d,
                   head_dim_v=d, dtype=dtype, device=torch.device(DEVICE), causal=causal,
                   scale=d ** -0.5)


def _lean_compile_job(job):
    """Worker: compile one forward (and with ``bwd`` the split backward) into the disk
    cache by running it on a small problem with the benchmark's specialisation."""
    dtype_name, d, causal, sq, lean, config, bwd = job
    os.environ.update(ATTNHUB_TRITON_AUTOTUNE="0", ATTNHUB_TRITON_LEAN=lean)
    import torch
    from attnhub_triton import ops
    ops.FORCED_CONFIGS.clear()
    if config is not None:
        ops.FORCED_CONFIGS["lean"] = config
    dtype = getattr(torch, dtype_name)
    p = _problem(d, sq, 256, "mha", causal, dtype)
    q = torch.randn(1, 8, sq, d, device=DEVICE, dtype=dtype)
    k, v = (torch.randn(1, 8, 256, d, device=DEVICE, dtype=dtype) for _ in range(2))
    t = time.time()
    try:
        o, lse = ops.flash_forward(q, k, v, p)
        if bwd:
            ops.flash_backward(torch.randn_like(o), q, k, v, o, lse, p, variant="split")
        torch.cuda.synchronize()
        return job, time.time() - t, None
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return job, time.time() - t, f"{type(e).__name__}: {str(e)[:300]}"


def lean_jobs() -> list:
    jobs = []
    for d in LEAN_DIMS:
        for causal in (False, True):
            jobs += [("bfloat16", d, causal, 256, "1", c, False) for c in LEAN_SWEEP[d][1:]]
            for dt in ("bfloat16", "float16"):
                jobs.append((dt, d, causal, 256, "1", None, dt == "bfloat16"))  # default + bwd
            jobs.append(("bfloat16", d, causal, 256, "0", None, False))  # the general forward
        for dt in ("bfloat16", "float16"):  # short queries: BLOCK_M 64
            jobs.append((dt, d, True, 1, "1", None, False))
    return sorted(jobs, key=lambda job: not job[6])  # the longest (with backward) first


def _compiled(fn) -> dict:
    """{cache key: CompiledKernel} of a JIT function, all devices (Triton 3.x layouts)."""
    out = {}
    for cache in getattr(fn, "device_caches", {}).values():
        kernels = cache[0] if isinstance(cache, tuple) else cache
        if isinstance(kernels, dict):
            out.update(kernels)
    return out


def _resources(kernel, warps: int) -> dict:
    """Registers, spill bytes, shared memory and programs per SM (65536 registers, 228 KB)."""
    if hasattr(kernel, "_init_handles"):  # loads the binary: n_regs, n_spills (spills / 4 B)
        kernel._init_handles()
    regs = int(getattr(kernel, "n_regs", 0))
    spills = int(getattr(kernel, "n_spills", 0))
    smem = int(getattr(kernel.metadata, "shared", 0))
    per_warp = -(-regs * 32 // 256) * 256
    by_regs = 65536 // max(per_warp * warps, 1)
    by_smem = (228 * 1024) // (smem + 1024) if smem else 32
    return {"regs": regs, "spills": spills, "smem": smem, "ctas_per_sm": min(by_regs, by_smem)}


def _check_session(out: str, filename: str):
    """What the --lean and --lean-bwd checks share: the result record, its writer
    (``out/filename``), and a spy on ``ops._launch`` that lists the kernel kinds launched.
    Returns (result, save, routes, the original launch -- to restore when done)."""
    import torch
    from attnhub_triton import ops

    result = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE,
              "torch": torch.__version__, "triton": __import__("triton").__version__,
              "date": time.strftime("%F %T"), "checks": [], "resources": {}, "bench": []}

    def save():
        with open(os.path.join(out, filename), "w") as f:
            json.dump(result, f, indent=1, default=str)

    routes = []
    launch = ops._launch

    def spy(kind, *a, **kw):
        routes.append(kind)
        return launch(kind, *a, **kw)

    ops._launch = spy
    return result, save, routes, launch


def lean_check(out: str, deadline: float) -> dict:
    """Correctness of the lean forward on the GPU, then its speed next to the general
    forward, SDPA cuDNN and SDPA flash (same process, do_bench medians)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench
    from attnhub.testing.tolerance import check_backward, compare_forward, random_inputs
    from attnhub_triton import TritonFA2Backend, _kernel_lean, _kernels, ops

    os.environ["ATTNHUB_TRITON_AUTOTUNE"] = "0"
    backend = TritonFA2Backend()
    result, save, routes, launch = _check_session(out, "lean.json")
    out_shapes = ops._out_shapes
    ops._out_shapes = lambda q, v, varlen: tuple(  # poisoned outputs: unwritten -> NaN
        t.fill_(float("nan")) for t in out_shapes(q, v, varlen))

    def run_checked(p, q, k, v, lean, config, name, backward=False):
        os.environ["ATTNHUB_TRITON_LEAN"] = lean
        ops.FORCED_CONFIGS.clear()
        if config is not None:
            ops.FORCED_CONFIGS["lean"] = config
        before = set(_compiled(_kernel_lean._attn_fwd_lean)) | set(_compiled(_kernels._attn_fwd))
        routes.clear()
        try:
            o, lse = ops.flash_forward(q, k, v, p)
            comps = compare_forward(o, lse, q, k, v, p)
            if backward:
                comps += check_backward(backend, q, k, v, p)
            row = {"case": name, "route": routes[0], "ok": all(c.ok for c in comps),
                   "errors": [str(c) for c in comps]}
        except Exception as e:  # noqa: BLE001
            row = {"case": name, "route": routes[:1], "ok": False,
                   "errors": [f"{type(e).__name__}: {str(e)[:300]}"]}
        finally:
            ops.FORCED_CONFIGS.clear()
        try:  # registers, spills, shared memory of what this case compiled or loaded
            for fn in (_kernel_lean._attn_fwd_lean, _kernels._attn_fwd):
                for key, kern in _compiled(fn).items():
                    if key not in before:
                        label = f"{fn.__name__} {p.dtype} d{p.head_dim} causal={p.causal} " + \
                            (_cfg_label(config) if config else f"default (Sq {p.seqlen_q})")
                        result["resources"][label] = _resources(
                            kern, int(getattr(kern.metadata, "num_warps", 4)))
        except Exception as e:  # noqa: BLE001 - a Triton layout this does not know
            result["resources"]["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        result["checks"].append(row)
        log(f"[check] {'ok ' if row['ok'] else 'FAIL'} {name} route={row['route']}")
        if not row["ok"]:
            for e in row["errors"]:
                log("      ", e)
        return row

    # 1. correctness: default configs over awkward shapes, both dtypes; every timed config
    #    on two ragged shapes; the backward from the lean O/LSE on two.
    for d in LEAN_DIMS:
        for dtype in (torch.bfloat16, torch.float16):
            for sq, sk, heads, causal, layout, batch in LEAN_SHAPES:
                p = _problem(d, sq, sk, heads, causal, dtype, batch)
                torch.manual_seed(0)
                q, k, v = random_inputs(p, layout=layout)
                bwd = dtype == torch.bfloat16 and (sq, sk) in ((1023, 1024), (113, 203)) \
                    and causal
                run_checked(p, q, k, v, "1", None,
                            f"{str(dtype)[6:]} d{d} {sq}x{sk} {heads} causal={causal} {layout}"
                            + (" +bwd" if bwd else ""), backward=bwd)
        for sq, sk, causal in ((203, 113, True), (113, 203, False), (1023, 1024, True)):
            p = _problem(d, sq, sk, "gqa", causal, torch.bfloat16, 2)
            torch.manual_seed(1)
            q, k, v = random_inputs(p, layout="bshd")
            for c in LEAN_SWEEP[d][1:]:
                run_checked(p, q, k, v, "1", c, f"bf16 d{d} {sq}x{sk} gqa causal={causal} bshd "
                            f"{_cfg_label(c)}")
            run_checked(p, q, k, v, "0", None,
                        f"bf16 d{d} {sq}x{sk} gqa causal={causal} bshd general")
    ops._out_shapes = out_shapes
    ops._launch = launch
    save()
    log(f"[check] {sum(r['ok'] for r in result['checks'])}/{len(result['checks'])} ok")
    for label, r in result["resources"].items():
        log(f"[ptxas] {label}: {r}")

    # 2. speed
    def timed(fn):
        return do_bench(fn, warmup=25, rep=150, return_mode="median")

    for d, s, causal in [(d, s, c) for d in LEAN_DIMS for s, c in LEAN_POINTS]:
        if time.time() > deadline:
            log("[bench] out of time")
            break
        p = _bench_problem(d, s, causal, device=DEVICE)
        shape = (p.batch, p.heads_q, s, d)
        q, k, v = (torch.randn(shape, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
        tfl = p.flops("fwd") / 1e12
        row = {"d": d, "s": s, "causal": causal}
        os.environ["ATTNHUB_TRITON_LEAN"] = "0"
        ref, _ = ops.flash_forward(q, k, v, p)
        row["general"] = tfl / (timed(lambda: ops.flash_forward(q, k, v, p)) * 1e-3)
        os.environ["ATTNHUB_TRITON_LEAN"] = "1"
        for c in LEAN_SWEEP[d]:
            ops.FORCED_CONFIGS["lean"] = c
            try:
                o, _ = ops.flash_forward(q, k, v, p)
                row[f"diff {_cfg_label(c)}"] = (o.float() - ref.float()).abs().max().item()
                row[_cfg_label(c)] = tfl / (timed(lambda: ops.flash_forward(q, k, v, p)) * 1e-3)
            except Exception as e:  # noqa: BLE001
                row[_cfg_label(c)] = None
                log(f"[bench] {_cfg_label(c)}: {type(e).__name__}: {str(e)[:200]}")
            ops.FORCED_CONFIGS.clear()
        for name, kind in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                           ("flash", SDPBackend.FLASH_ATTENTION)):
            try:
                with sdpa_kernel(kind):
                    row[name] = tfl / (timed(lambda: F.scaled_dot_product_attention(
                        q, k, v, is_causal=causal)) * 1e-3)
            except Exception as e:  # noqa: BLE001
                row[name] = None
                row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
        result["bench"].append(row)
        log("[bench]", json.dumps({k: (round(x, 4) if isinstance(x, float) else x)
                                   for k, x in row.items()}))
        del q, k, v, ref
        torch.cuda.empty_cache()
        save()
    return result


LEAN_WS_SNIPPET = r"""
import os, sys, json, torch
os.environ.update(ATTNHUB_TRITON_AUTOTUNE="0", ATTNHUB_TRITON_LEAN="1")
sys.path[:0] = [sys.argv[1]]
from device_check import _bench_problem, _compiled, _resources
from attnhub_triton import ops, _kernel_lean
from triton.testing import do_bench
res = {}
for d, s, causal, cfgs in ((128, 16384, False, ((128, 64, 2), (128, 64, 3))), (64, 16384, False, ((128, 64, 3),)),
                           (128, 16384, True, ((128, 64, 2),))):
    p = _bench_problem(d, s, causal)
    q, k, v = (torch.randn(p.batch, p.heads_q, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    tfl = p.flops() / 1e12
    for bm, bn, st in cfgs:
        for ws in (False, True):
            name = f"d{d} s{s} causal={causal} {bm}x{bn} w4 s{st} ws={ws}"
            ops.FORCED_CONFIGS["lean"] = ({"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": ws}, 4, st)
            before = set(_compiled(_kernel_lean._attn_fwd_lean))
            try:
                o, _ = ops.flash_forward(q, k, v, p)
                if not ws:
                    ref = o
                err = (o.float() - ref.float()).abs().max().item()
                ms = do_bench(lambda: ops.flash_forward(q, k, v, p), warmup=25, rep=150, return_mode="median")
                new = [kk for kk in _compiled(_kernel_lean._attn_fwd_lean).items() if kk[0] not in before]
                res[name] = {"tflops": tfl / (ms * 1e-3), "max_diff_vs_no_ws": err,
                             **(_resources(new[0][1], 4) if new else {})}
            except Exception as e:
                res[name] = f"{type(e).__name__}: {str(e)[:200]}"
            print(name, res[name], flush=True)
print("WS_RESULT", json.dumps(res))
"""


def print_lean_table(result):
    log("\nForward TFLOP/s (bf16), batch=16384//S, heads=2048//D, one process; "
        "ratios = best lean / peer")
    for r in result.get("bench", []):
        d = r["d"]
        lean = {_cfg_label(c): r.get(_cfg_label(c)) for c in LEAN_SWEEP[d]}
        best = max((x for x in lean.values() if x), default=None)
        cells = " ".join(f"{k}={v:.0f}" if v else f"{k}=n/a" for k, v in lean.items())
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "n/a"  # noqa: E731
        log(f"d{d} S={r['s']} causal={r['causal']}: general={r['general']:.0f} {cells} | "
            f"cudnn={r.get('cudnn') or 0:.0f} flash={r.get('flash') or 0:.0f} | best/cudnn="
            f"{ratio(best, r.get('cudnn'))} best/flash={ratio(best, r.get('flash'))} "
            f"best/general={ratio(best, r['general'])} default/cudnn="
            f"{ratio(lean[_cfg_label(LEAN_SWEEP[d][0])], r.get('cudnn'))}")


# -- 6. the lean dK/dV kernel and 4-warp dQ tiles (--lean-bwd) ---------------------------------

# Lean dK/dV configs timed per head dim; the first is ops._DEFAULTS["lean_dkdv"].
LEAN_BWD_SWEEP = {
    64: [_lcfg(64, 64, 4, 2), _lcfg(64, 64, 4, 3), _lcfg(32, 64, 4, 2), _lcfg(32, 64, 4, 3)],
    128: [_lcfg(32, 64, 4, 2), _lcfg(64, 64, 4, 2), _lcfg(32, 64, 4, 3)],  # 64x64 s3: 130 KB
}
# dQ tiles timed next to the default (ops._DEFAULTS["dq"], 128x64 w8): one warpgroup per
# program, two programs per SM (ptxas, Triton 3.9: d128 188 registers, 0 spills, 99 KB).
DQ_SWEEP = {64: [_lcfg(64, 64, 4, 2)], 128: [_lcfg(64, 64, 4, 2), _lcfg(64, 64, 4, 3)]}
# (the Δ pre-pass, ATTNHUB_TRITON_DELTA_PREPASS=1, is timed at every point, d256 included:
# it takes up to 4.7k SASS instructions and ~1000 spill loads/stores off each dQ program)
# The two-part dK/dV pass (ATTNHUB_TRITON_DKDV_PARTS=1: dV, then dK, one accumulator per
# program), tiles per head dim, the first ops._DEFAULTS["dv_part"/"dk_part"].  ptxas (Triton
# 3.6, sm90): d256 64x64 w8 245 / 255 + 8 B registers, no loop spills (the one-launch 32x64
# w8: 255 + 32 B, 1-2 loop LDL); d128 64x128 w8 218-240 / 248-255, no loop spills (the one-
# launch tile: 255 + 120-184 B, 24-37 loop LDL).
PARTS_SWEEP = {256: [_lcfg(64, 64, 8, 2), _lcfg(32, 64, 8, 2)], 128: [_lcfg(64, 128, 8, 2)]}
# --families: which of the above the --lean-bwd check builds, checks and times
BWD_FAMILIES = ["lean", "dq", "prepass", "parts"]
LEAN_BWD_POINTS = ([(d, s, c) for d in (64, 128) for s in (2048, 16384) for c in (False, True)]
                   + [(256, s, c) for s in (1024, 16384) for c in (False, True)]
                   + [(128, 1024, False)])


def _lean_bwd_compile_job(job):
    """Worker: compile the split backward with a pinned lean dK/dV and/or dQ config (and
    with ``prepass``, Δ in its own pass; with a ``parts_cfg``, the two-part dK/dV pass)."""
    d, causal, lean_cfg, dq_cfg, prepass = job[:5]
    parts_cfg = job[5] if len(job) > 5 else None
    os.environ.update(ATTNHUB_TRITON_AUTOTUNE="0", ATTNHUB_TRITON_LEAN_BWD="1",
                      ATTNHUB_TRITON_DELTA_PREPASS="1" if prepass else "0",
                      ATTNHUB_TRITON_DKDV_PARTS="1" if parts_cfg else "0")
    import torch
    from attnhub_triton import ops
    ops.FORCED_CONFIGS.clear()
    if lean_cfg is not None:
        ops.FORCED_CONFIGS["lean_dkdv"] = lean_cfg
    if dq_cfg is not None:
        ops.FORCED_CONFIGS["dq"] = dq_cfg
    if parts_cfg is not None:
        ops.FORCED_CONFIGS.update(dv_part=parts_cfg, dk_part=parts_cfg)
    p = _bench_problem(d, 1024, causal, device=DEVICE, batch=1, heads=2)
    q, k, v = (torch.randn(1, 2, 1024, d, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
    t = time.time()
    try:
        o, lse = ops.flash_forward(q, k, v, p)
        ops.flash_backward(torch.randn_like(o), q, k, v, o, lse, p, variant="split")
        torch.cuda.synchronize()
        return job, time.time() - t, None
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return job, time.time() - t, f"{type(e).__name__}: {str(e)[:300]}"


def lean_bwd_jobs() -> list:
    fam = set(BWD_FAMILIES)
    jobs = [(d, c, lc, dc, False) for d in (64, 128) for c in (False, True)
            for lc, dc in [(x, None) for x in LEAN_BWD_SWEEP[d] if "lean" in fam]
            + [(None, x) for x in DQ_SWEEP[d] if "dq" in fam]]
    dims = (64, 128, 256) if fam - {"parts"} else tuple(PARTS_SWEEP)
    jobs += [(d, c, None, None, pre) for d in dims for c in (False, True)
             for pre in (False, True) if pre and "prepass" in fam or not pre]
    if "parts" in fam:  # the one-launch reference tile is in the list above
        jobs += [(d, c, None, None, False, x) for d, xs in PARTS_SWEEP.items()
                 for c in (False, True) for x in xs]
    return jobs


def lean_bwd_check(out: str, deadline: float) -> dict:
    """The lean dK/dV kernel and the 4-warp dQ tiles on the GPU: correctness (tolerance
    rule, NaN-poisoned gradients, awkward shapes, both dtypes, every timed config), their
    registers and spills, then the split backward's TFLOP/s with each against the default
    kernels, SDPA cuDNN and flash (same process, do_bench medians)."""
    import torch
    from triton.testing import do_bench
    from attnhub.testing.tolerance import check_backward, random_inputs
    from attnhub_triton import TritonFA2Backend, _kernel_lean, _kernels, ops

    os.environ.update(ATTNHUB_TRITON_AUTOTUNE="0", ATTNHUB_TRITON_BWD="split")
    backend = TritonFA2Backend()
    result, save, routes, launch = _check_session(out, "lean_bwd.json")
    empty_like_layout = ops._empty_like_layout
    ops._empty_like_layout = lambda *a, **kw: empty_like_layout(*a, **kw).fill_(float("nan"))

    def run_checked(p, q, k, v, lean, forced, name, prepass="0", parts="0"):
        os.environ["ATTNHUB_TRITON_LEAN_BWD"] = lean
        os.environ["ATTNHUB_TRITON_DELTA_PREPASS"] = prepass
        os.environ["ATTNHUB_TRITON_DKDV_PARTS"] = parts
        ops.FORCED_CONFIGS.clear()
        ops.FORCED_CONFIGS.update(forced)
        fns = (_kernel_lean._attn_bwd_dkdv_lean, _kernels._attn_bwd_dq, _kernels._attn_bwd_dkdv)
        before = {fn: set(_compiled(fn)) for fn in fns}
        routes.clear()
        try:
            comps = check_backward(backend, q, k, v, p)
            row = {"case": name, "routes": sorted(set(routes)), "ok": all(c.ok for c in comps),
                   "errors": [str(c) for c in comps]}
        except Exception as e:  # noqa: BLE001
            row = {"case": name, "routes": sorted(set(routes)), "ok": False,
                   "errors": [f"{type(e).__name__}: {str(e)[:300]}"]}
        finally:
            ops.FORCED_CONFIGS.clear()
        try:
            for fn in fns:
                for key, kern in _compiled(fn).items():
                    if key not in before[fn]:
                        label = f"{fn.__name__} {p.dtype} d{p.head_dim} causal={p.causal} " + \
                            (" ".join(f"{kk}={_cfg_label(c)}" for kk, c in forced.items())
                             or "default")
                        result["resources"][label] = _resources(
                            kern, int(getattr(kern.metadata, "num_warps", 4)))
        except Exception as e:  # noqa: BLE001
            result["resources"]["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        result["checks"].append(row)
        log(f"[check] {'ok ' if row['ok'] else 'FAIL'} {name} routes={row['routes']}")
        if not row["ok"]:
            for e in row["errors"]:
                log("      ", e)
        return row

    fam = set(BWD_FAMILIES)
    # 1. correctness
    for d in (64, 128) if "lean" in fam or "dq" in fam else ():
        for dtype in (torch.bfloat16, torch.float16) if "lean" in fam else ():
            for sq, sk, heads, causal, layout, batch in LEAN_SHAPES:
                p = _problem(d, sq, sk, heads, causal, dtype, batch)
                torch.manual_seed(0)
                q, k, v = random_inputs(p, layout=layout)
                run_checked(p, q, k, v, "1", {}, f"{str(dtype)[6:]} d{d} {sq}x{sk} {heads} "
                            f"causal={causal} {layout}")
        for sq, sk, causal in ((203, 113, True), (113, 203, False), (1023, 1024, True)):
            p = _problem(d, sq, sk, "gqa", causal, torch.bfloat16, 2)
            torch.manual_seed(1)
            q, k, v = random_inputs(p, layout="bshd")
            for c in LEAN_BWD_SWEEP[d][1:] if "lean" in fam else ():
                run_checked(p, q, k, v, "1", {"lean_dkdv": c},
                            f"bf16 d{d} {sq}x{sk} gqa causal={causal} bshd lean {_cfg_label(c)}")
            for c in DQ_SWEEP[d] if "dq" in fam else ():
                run_checked(p, q, k, v, "0", {"dq": c},
                            f"bf16 d{d} {sq}x{sk} gqa causal={causal} bshd dq {_cfg_label(c)}")
    for d in (64, 128, 256) if "prepass" in fam else ():  # the Δ pre-pass, general kernels
        for sq, sk, heads, causal, layout, batch in LEAN_SHAPES[::2]:
            p = _problem(d, sq, sk, heads, causal, torch.bfloat16, batch)
            torch.manual_seed(2)
            q, k, v = random_inputs(p, layout=layout)
            run_checked(p, q, k, v, "0", {}, f"bf16 d{d} {sq}x{sk} {heads} causal={causal} "
                        f"{layout} delta-prepass", prepass="1")
    for d, configs in PARTS_SWEEP.items() if "parts" in fam else ():  # two-part dK/dV
        for n, (sq, sk, heads, causal, layout, batch) in enumerate(LEAN_SHAPES):
            for dtype in (torch.bfloat16, torch.float16) if n < 2 else (torch.bfloat16,):
                p = _problem(d, sq, sk, heads, causal, dtype, batch)
                torch.manual_seed(3)
                q, k, v = random_inputs(p, layout=layout)
                for c in configs:
                    run_checked(p, q, k, v, "0", {"dv_part": c, "dk_part": c},
                                f"{str(dtype)[6:]} d{d} {sq}x{sk} {heads} causal={causal} "
                                f"{layout} parts {_cfg_label(c)}", parts="1")
    ops._empty_like_layout = empty_like_layout
    ops._launch = launch
    save()
    log(f"[check] {sum(r['ok'] for r in result['checks'])}/{len(result['checks'])} ok")
    for label, r in result["resources"].items():
        log(f"[ptxas] {label}: {r}")

    # 2. speed: the split backward with each variant
    def timed(fn):
        return do_bench(fn, warmup=20, rep=100, return_mode="median")

    points = [x for x in LEAN_BWD_POINTS
              if fam & {"lean", "dq", "prepass"} or x[0] in PARTS_SWEEP]
    for d, s, causal in points:
        if time.time() > deadline:
            log("[bench] out of time")
            break
        p = _bench_problem(d, s, causal, device=DEVICE)
        shape = (p.batch, p.heads_q, s, d)
        q, k, v, do = (torch.randn(shape, device=DEVICE, dtype=torch.bfloat16) for _ in range(4))
        o, lse = ops.flash_forward(q, k, v, p)
        tfl = p.flops("bwd") / 1e12
        row = {"d": d, "s": s, "causal": causal}

        def bwd_tflops(name, lean, forced, ref=None, prepass="0", parts="0"):
            os.environ["ATTNHUB_TRITON_LEAN_BWD"] = lean
            os.environ["ATTNHUB_TRITON_DELTA_PREPASS"] = prepass
            os.environ["ATTNHUB_TRITON_DKDV_PARTS"] = parts
            ops.FORCED_CONFIGS.clear()
            ops.FORCED_CONFIGS.update(forced)
            try:
                grads = ops.flash_backward(do, q, k, v, o, lse, p)
                if ref is not None:
                    row[f"diff {name}"] = max((a.float() - b.float()).abs().max().item()
                                              for a, b in zip(grads, ref))
                row[name] = tfl / (timed(lambda: ops.flash_backward(do, q, k, v, o, lse, p))
                                   * 1e-3)
                return grads
            except Exception as e:  # noqa: BLE001
                row[name] = None
                log(f"[bench] {name}: {type(e).__name__}: {str(e)[:200]}")
            finally:
                ops.FORCED_CONFIGS.clear()

        ref = bwd_tflops("general", "0", {})
        if "prepass" in fam:
            bwd_tflops("general + delta prepass", "0", {}, ref, prepass="1")
        for c in LEAN_BWD_SWEEP.get(d, []) if "lean" in fam else ():
            bwd_tflops(f"lean {_cfg_label(c)}", "1", {"lean_dkdv": c}, ref)
        if d in LEAN_BWD_SWEEP and {"lean", "prepass"} <= fam:
            bwd_tflops("lean default + delta prepass", "1", {}, ref, prepass="1")
        for c in DQ_SWEEP.get(d, []) if "dq" in fam else ():
            bwd_tflops(f"dq {_cfg_label(c)}", "0", {"dq": c}, ref)
            if "lean" in fam:
                bwd_tflops(f"dq {_cfg_label(c)} + lean", "1", {"dq": c}, ref)
        for c in PARTS_SWEEP.get(d, []) if "parts" in fam else ():
            bwd_tflops(f"parts {_cfg_label(c)}", "0", {"dv_part": c, "dk_part": c}, ref,
                       parts="1")
        _sdpa_backward_peers(row, q, k, v, do, causal, tfl, timed)
        result["bench"].append(row)
        log("[bench]", json.dumps({k: (round(x, 4) if isinstance(x, float) else x)
                                   for k, x in row.items()}))
        del q, k, v, do, o, lse
        torch.cuda.empty_cache()
        save()
    return result


def plot_lean_bwd(json_path: str, png_path: str) -> None:
    """Bars per grid point: every timed split-backward variant next to cuDNN and flash."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        data = json.load(f)
    rows = data["bench"]
    names = [k for k in dict.fromkeys(k for r in rows for k in r)
             if k not in ("d", "s", "causal") and not k.startswith("diff")
             and not k.endswith("_error")]
    fig, ax = plt.subplots(figsize=(max(10, 1.3 * len(rows)), 5.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar([j + i * width for j in range(len(rows))],
               [r.get(name) or 0 for r in rows], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))],
                  [f"d{r['d']} {r['s'] // 1024}k{' c' if r['causal'] else ''}" for r in rows])
    ax.set_ylabel("backward TFLOP/s")
    ax.set_title(f"triton-fa2 split backward variants, {data['device']}, bf16, {data['date']}"
                 " (one process)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def print_lean_bwd_table(result):
    log("\nBackward TFLOP/s (bf16, split variant), batch=16384//S, heads=2048//D, one process")
    for r in result.get("bench", []):
        cells = {k: v for k, v in r.items() if isinstance(v, float) and not k.startswith("diff")}
        best = max((v for k, v in cells.items() if k not in ("cudnn", "flash")), default=None)
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "n/a"  # noqa: E731
        log(f"d{r['d']} S={r['s']} causal={r['causal']}: " +
            " ".join(f"[{k}]={v:.0f}" for k, v in cells.items()) +
            f" | best/cudnn={ratio(best, r.get('cudnn'))} best/flash={ratio(best, r.get('flash'))}"
            f" best/general={ratio(best, r.get('general'))}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/attnhub_triton_check"))
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--test-timeout", type=float, default=200)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--warp-spec", action="store_true", help="also try phase 4")
    ap.add_argument("--bwd", action="store_true", help="the backward-variant check instead")
    ap.add_argument("--test-select", default="", help="-k expression AND-ed to every shard")
    ap.add_argument("--budget", type=float, default=270, help="seconds for --bwd/--lean in all")
    ap.add_argument("--lean", action="store_true", help="the lean-forward check instead")
    ap.add_argument("--lean-bwd", action="store_true",
                    help="the lean dK/dV and 4-warp dQ check instead")
    ap.add_argument("--dims", type=int, nargs="+", help="--lean: these head dims only")
    ap.add_argument("--families", default=",".join(BWD_FAMILIES),
                    help="--lean-bwd: which of lean,dq,prepass,parts to check and time")
    args = ap.parse_args()
    families = args.families.split(",")
    if not families or set(families) - set(BWD_FAMILIES):
        ap.error(f"--families {args.families!r}: a comma-separated subset of "
                 f"{','.join(BWD_FAMILIES)}")
    BWD_FAMILIES[:] = families
    if args.dims:
        LEAN_DIMS[:] = args.dims
    os.makedirs(args.out, exist_ok=True)
    import torch
    import triton
    log(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
    summary = {}
    t = time.time()
    if args.lean_bwd or args.lean:
        name = "lean-bwd" if args.lean_bwd else "lean"
        deadline = t + args.budget
        jobs, job_fn, check, margin, table = (
            (lean_bwd_jobs(), _lean_bwd_compile_job, lean_bwd_check, 30, print_lean_bwd_table)
            if args.lean_bwd else
            (lean_jobs(), _lean_compile_job, lean_check, 45, print_lean_table))
        try:
            summary["warm"] = warm_cache(args.workers, jobs, job_fn)
        except Exception as e:  # noqa: BLE001
            log("[warm] failed:", repr(e)[:300])
        log(f"[warm] {time.time() - t:.0f}s")
        result = {}
        try:
            result = check(args.out, deadline - margin)
        except Exception:  # noqa: BLE001
            import traceback
            log(f"[{name}] failed:", traceback.format_exc()[-2000:])
        table(result)
        if args.lean and args.warp_spec and deadline - time.time() > 25:
            summary["warp_spec"] = run_ws_snippet(LEAN_WS_SNIPPET, deadline - time.time() - 5)
            log(f"[ws] {summary['warp_spec']}")
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, default=str)
        log(f"[{name}] total {time.time() - t:.0f}s")
        return
    if args.bwd:
        deadline = t + args.budget
        procs = [] if args.skip_tests else start_tests(args.test_select)
        try:
            summary["warm"] = warm_cache(args.workers, bwd_jobs())
        except Exception as e:  # noqa: BLE001
            log("[warm] failed:", repr(e)[:300])
        if procs:
            summary["tests"] = run_tests(args.out, max(10, args.test_timeout - (time.time() - t)),
                                         procs=procs)
        log(f"[tests+warm] {time.time() - t:.0f}s")
        result = {}
        if not args.skip_bench:
            try:
                result = bench_bwd(args.out, deadline - 15)
            except Exception as e:  # noqa: BLE001
                import traceback
                log("[bwd] failed:", traceback.format_exc()[-1500:])
        print_bwd_table(result)
        for r in summary.get("tests", []):
            log(f"[tests] {r['shard']!r}: {r['summary']}")
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, default=str)
        return
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
            summary["warp_spec"] = run_ws_snippet(WS_SNIPPET, 90)
            log(f"[ws] {time.time() - t:.0f}s {summary['warp_spec']}")
        print_table(rows)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    for r in summary.get("tests", []):
        log(f"[tests] {r['shard']!r}: {r['summary']}")


if __name__ == "__main__":
    main()
