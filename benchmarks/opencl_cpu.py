"""The ``opencl`` backend on this machine's OpenCL device against torch's CPU SDPA kernels,
side by side in one run, plus its peak memory at S=32768.

    python benchmarks/opencl_cpu.py                 # ~3 min on 2 cores
    python benchmarks/opencl_cpu.py --quick         # the S=4096 target cases only
    ATTNHUB_OPENCL_DEVICE=NVIDIA python benchmarks/opencl_cpu.py --quick --no-memory

Methods, on the same inputs, interleaved (one call of each per round, so a busy machine
slows all of them alike):

* ``opencl``: ``OpenCLBackend().forward`` / ``.backward`` (zero-copy on PoCL; on a discrete
  GPU the time includes the host<->device copies, and ``kernel_median_s`` the kernels alone,
  from OpenCL profiling events);
* ``sdpa-flash``: ``scaled_dot_product_attention`` under ``SDPBackend.FLASH_ATTENTION``
  (torch's CPU flash kernel), backward through autograd;
* ``sdpa-math``: the same under ``SDPBackend.MATH`` (S x S scores; S <= 4096 only).

FLOPs as in the FlashAttention papers (``Problem.flops``): 4·B·H·S²·D forward, halved when
causal, backward 2.5x forward.  Each time is the median of ``--rounds`` rounds (min also
recorded); CPU time (all threads) is recorded next to wall time.  Memory: a subprocess runs
one forward at S=32768, H=1, D=64 (float32) after a warm-up that builds the kernels, and
reports the rise of its peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) over the resident set before the call; the inputs (24 MiB) are
allocated before, O and LSE (8.1 MiB) during.

Writes ``benchmarks/results/opencl_cpu.json`` and ``opencl_cpu.png`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import attnhub

HERE = Path(__file__).resolve().parent


def _problem(b, h, s, d, causal) -> attnhub.Problem:
    return attnhub.Problem(batch=b, heads_q=h, heads_kv=h, seqlen_q=s, seqlen_k=s, head_dim=d,
                           head_dim_v=d, dtype=torch.float32, device=torch.device("cpu"),
                           causal=causal, scale=d ** -0.5)


def _sdpa(kind, q, k, v, causal, do=None):
    with sdpa_kernel([kind]):
        if do is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
        o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        return lambda: o.backward(do)


def _methods(backend, case, q, k, v, do):
    """name -> (setup, run): ``setup()`` returns what ``run`` times (backward: the graph)."""
    p, causal, direction = case["problem"], case["causal"], case["direction"]
    out = {}
    if direction == "fwd":
        out["opencl"] = lambda: (lambda: backend.forward(q, k, v, p))
        out["sdpa-flash"] = lambda: (
            lambda: _sdpa(SDPBackend.FLASH_ATTENTION, q, k, v, causal))
        if case["seqlen"] <= 4096:
            out["sdpa-math"] = lambda: (lambda: _sdpa(SDPBackend.MATH, q, k, v, causal))
    else:
        o, lse = backend.forward(q, k, v, p)
        out["opencl"] = lambda: (lambda: backend.backward(do, q, k, v, o, lse, p))
        out["sdpa-flash"] = lambda: _sdpa(SDPBackend.FLASH_ATTENTION, q, k, v, causal, do)
        if case["seqlen"] <= 4096:
            out["sdpa-math"] = lambda: _sdpa(SDPBackend.MATH, q, k, v, causal, do)
    return out


def run_case(backend, rt, case, rounds):
    torch.manual_seed(0)
    b, h, s, d = case["batch"], case["heads"], case["seqlen"], case["head_dim"]
    q, k, v = (torch.randn(b, h, s, d) for _ in range(3))
    do = torch.randn(b, h, s, d)
    methods = _methods(backend, case, q, k, v, do)
    for setup in methods.values():  # warm-up: kernel builds, allocator, threads
        setup()()
    wall = {name: [] for name in methods}
    cpu = {name: [] for name in methods}
    kernel = []
    for _ in range(rounds):
        for name, setup in methods.items():
            fn = setup()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if name == "opencl":
                kernel.append(rt.kernel_seconds())
    flops = case["problem"].flops(case["direction"])
    rows = {}
    for name in methods:
        med = statistics.median(wall[name])
        rows[name] = {"median_s": med, "min_s": min(wall[name]),
                      "cpu_median_s": statistics.median(cpu[name]),
                      "gflops": flops / med / 1e9, "gflops_best": flops / min(wall[name]) / 1e9}
    rows["opencl"]["kernel_median_s"] = statistics.median(kernel)
    for name in rows:
        rows[name]["speedup_vs_sdpa_flash"] = rows["sdpa-flash"]["median_s"] / rows[name][
            "median_s"]
    return rows


_MEMORY_CHILD = textwrap.dedent("""
    import json, sys, time, torch, attnhub
    from attnhub_opencl import OpenCLBackend
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    method, S, H, D = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    p = attnhub.Problem(batch=1, heads_q=H, heads_kv=H, seqlen_q=S, seqlen_k=S, head_dim=D,
                        head_dim_v=D, dtype=torch.float32, device=torch.device("cpu"),
                        scale=D ** -0.5)
    small = attnhub.Problem(batch=1, heads_q=H, heads_kv=H, seqlen_q=128, seqlen_k=128,
                            head_dim=D, head_dim_v=D, dtype=torch.float32,
                            device=torch.device("cpu"), scale=D ** -0.5)
    be = OpenCLBackend()
    if method == "opencl":
        run = lambda a, b, c, prob: be.forward(a, b, c, prob)
    else:
        def run(a, b, c, prob):
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(a, b, c)
    qs = [torch.randn(1, H, 128, D) for _ in range(3)]
    run(*qs, small)                                   # builds the kernels, starts threads
    q, k, v = (torch.randn(1, H, S, D) for _ in range(3))
    open("/proc/self/clear_refs", "w").write("5")     # reset VmHWM to the current RSS
    before = status("VmRSS")
    t = time.perf_counter()
    out = run(q, k, v, p)
    seconds = time.perf_counter() - t
    peak = status("VmHWM")
    print(json.dumps({"rss_before": before, "peak": peak, "extra": peak - before,
                      "seconds": seconds}))
""")


def measure_memory(method, s=32768, h=1, d=64):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, method, str(s), str(h), str(d)],
                         capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        return {"error": res.stderr.strip()[-2000:]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["extra_mib"] = out["extra"] / 2**20
    return out


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["opencl", "sdpa-flash", "sdpa-math"]
    colors = {"opencl": "tab:green", "sdpa-flash": "tab:blue", "sdpa-math": "tab:gray"}
    panels = [("fwd", "forward"), ("bwd", "backward")]
    fig, axes = plt.subplots(2, 1, figsize=(11, 8))
    width = 0.27
    for ax, (direction, title) in zip(axes, panels):
        cases = [c for c in report["cases"] if c["direction"] == direction]
        for i, name in enumerate(names):
            xs, ys = [], []
            for j, case in enumerate(cases):
                if name in case["results"]:
                    xs.append(j + (i - 1) * width)
                    ys.append(case["results"][name]["gflops"])
            ax.bar(xs, ys, width, label=name, color=colors[name])
            for x, y in zip(xs, ys):
                ax.text(x, y, f"{y:.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([f"S={c['seqlen']} D={c['head_dim']}\nH={c['heads']}"
                            + (" causal" if c["causal"] else "") for c in cases], fontsize=8)
        ax.set_ylabel("GFLOP/s (median)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"attnhub opencl on {report['device']}\nvs torch {report['versions']['torch']} "
                 f"CPU SDPA, float32, {report['date']}, {report['cpu_count']} cores "
                 f"({report['cpu']}); FlashAttention FLOP count", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="S=4096 D=64 cases only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--from-json", help="only redraw the PNG of an earlier run")
    args = parser.parse_args()
    if args.from_json:
        src = Path(args.from_json)
        plot(json.loads(src.read_text()), src.with_suffix(".png"))
        return

    from attnhub_opencl import OpenCLBackend

    backend = OpenCLBackend()
    reason = backend.probe()
    if reason:
        raise SystemExit(f"opencl backend unavailable: {reason}")
    info = backend.extra_info()
    from attnhub_opencl import _current_runtime

    rt = _current_runtime()
    rt.enable_profiling()  # kernel-only times next to the end-to-end ones

    shapes = [(1, 8, 4096, 64)]
    if not args.quick:
        shapes += [(1, 8, 1024, 64), (1, 8, 2048, 64), (1, 8, 4096, 128), (1, 4, 8192, 64)]
    cases = []
    for b, h, s, d in shapes:
        for direction in ("fwd", "bwd"):
            for causal in (False, True):
                if direction == "bwd" and (b, h, s, d) != shapes[0] and args.quick:
                    continue
                label = f"{direction} S={s} D={d}{' causal' if causal else ''}"
                cases.append(dict(batch=b, heads=h, seqlen=s, head_dim=d, causal=causal,
                                  direction=direction, label=label,
                                  problem=_problem(b, h, s, d, causal)))
    load_before = os.getloadavg()
    for case in cases:
        t = time.perf_counter()
        case["results"] = run_case(backend, rt, case, args.rounds)
        r = case["results"]
        print(f"{case['label']:28s} " + "  ".join(
            f"{n} {x['gflops']:6.1f} GF/s ({x['median_s'] * 1e3:7.1f} ms)" for n, x in r.items())
            + f"  opencl/flash {r['opencl']['speedup_vs_sdpa_flash']:.2f}x"
            f"  (opencl kernels {r['opencl']['kernel_median_s'] * 1e3:.1f} ms)"
            f"  [{time.perf_counter() - t:.0f} s]", flush=True)
    report = {
        "what": "attnhub opencl backend vs torch CPU SDPA, float32, side by side",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "device": info.get("device"),
        "device_info": info,
        "versions": _versions(),
        "rounds": args.rounds,
        "cases": [{k: v for k, v in c.items() if k != "problem"} for c in cases],
    }
    if not args.no_memory:
        report["memory_S32768_H1_D64_fwd"] = {
            "note": "VmHWM rise over VmRSS during one forward, in a fresh subprocess after "
                    "a warm-up; inputs allocated before, O and LSE (8.1 MiB) during",
            "opencl": measure_memory("opencl"),
            "sdpa-flash": measure_memory("sdpa-flash"),
            "naive_score_matrix_mib": 32768 * 32768 * 4 / 2**20,
        }
        mem = report["memory_S32768_H1_D64_fwd"]
        print("memory S=32768 H=1 D=64 fwd: " + ", ".join(
            f"{n} {m.get('extra_mib', float('nan')):.1f} MiB extra" for n, m in mem.items()
            if isinstance(m, dict)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "opencl_cpu" if "CPU" in str(info.get("type", "")) else "opencl_device"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    plot(report, out / f"{stem}.png")
    print(f"wrote {out / (stem + '.json')} and .png")


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict:
    import numpy
    import pyopencl

    return {"python": platform.python_version(), "torch": torch.__version__,
            "attnhub": attnhub.__version__, "pyopencl": pyopencl.VERSION_TEXT,
            "numpy": numpy.__version__}


if __name__ == "__main__":
    main()
