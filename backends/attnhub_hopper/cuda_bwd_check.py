"""Check and time the warp-specialised CUDA backward (``fa3_bwd.cu``) on an H100 in one call.

    python backends/attnhub_hopper/cuda_bwd_check.py --out $OUT [--quick] [--no-grid]
        [--dims 128,64] [--tiles s2-ahead,s2-release]

1. Builds every specialisation: d64/d128/d256 × causal × bf16/fp16 × the variants that
   fit (cuda_bwd.tiles_for: Q/dO ring depth 1-3, dQ by smem + bulk reduction or by
   red.global.add from registers, early dV).
2. Correctness: the tolerance rule for dQ, dK, dV (attnhub.testing.tolerance.compare_backward:
   within 2× torch's own low-precision error against the fp64/fp32 reference) on fresh random
   inputs, O and LSE from the CUDA forward, NaN-poisoned memory before every call, over d64,
   d128 and d256, causal and not, (Sq, Sk) in (113, 203), (1023, 1024), (1, 4096), (4096, 1),
   (300, 100), GQA, MQA with BSHD, fp16 (default variant), and every other variant on two
   awkward shapes; plus a rerun: dK, dV must be bit-identical (no atomics), dQ may differ by
   the order of its L2 reductions (reported).
3. Timing (triton.testing.do_bench medians) on the FA grid (batch = 16384 // S, heads =
   2048 // D, d64/d128/d256, 1k-16k, causal and not): this kernel's variants (prep + kernel
   + dQ conversion, i.e. what a caller pays), triton-fa2's backward, and SDPA cuDNN /
   flash / efficient backward through autograd (``o.backward(do)``, as attnhub.bench times
   it), all in the same run.  Backward FLOPs = 2.5 × forward (4·B·H·S²·D, halved when causal).
Writes cuda_bwd.json, cuda_bwd.png, cuda_bwd_log.txt under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]

from attnhub_hopper.device_check import (_bench, _poison, fa_point, plot_only,  # noqa: E402
                                         tee_log)

GRID_S = (1024, 2048, 4096, 8192, 16384)
_SELECT = {"dims": None, "tiles": None}  # --dims / --tiles (None: all)
#: head dims the next kernel up serves on TMA's zero fill (cuda_bwd.kernel_head_dim): the
#: default tiles' cases and timing only
PADDED_DIMS = (96, 224)


def selected_tiles(D: int) -> list:
    """cuda_bwd.tiles_for(D) limited to --tiles (by name, e.g. ``s2-ahead``); the default
    tiles (plain, and the causal ``lpt`` one where it ships) always stay: they are what the
    variants are compared with."""
    from attnhub_hopper import cuda_bwd

    names = _SELECT["tiles"]
    defaults = {cuda_bwd.default_tile(D, c, s) for c in (False, True) for s in GRID_S}
    kd = cuda_bwd.kernel_head_dim(D)
    return [t for t in cuda_bwd.tiles_for(kd) if t in defaults
            or (kd == D and (names is None or str(t) in names))]


def selected_dims() -> tuple:
    from attnhub_hopper import cuda_bwd

    dims = _SELECT["dims"]
    return tuple(D for D in cuda_bwd.HEAD_DIMS + PADDED_DIMS if dims is None or D in dims)


def _problem(B, Hq, Hk, Sq, Sk, D, dtype, causal):
    import torch
    from attnhub.contract import Problem

    return Problem(B, Hq, Hk, Sq, Sk, D, D, dtype, torch.device("cuda"), scale=D ** -0.5,
                   causal=causal)


def cases(quick: bool) -> list:
    import torch
    from attnhub_hopper import cuda_bwd

    out = []
    for D in selected_dims():
        for causal in (False, True):
            for sq, sk in ((113, 203), (1023, 1024), (1, 4096), (4096, 1), (300, 100)):
                out.append(dict(D=D, causal=causal, Sq=sq, Sk=sk, B=2, Hq=4, Hk=4))
            out.append(dict(D=D, causal=causal, Sq=1024, Sk=1100, B=2, Hq=8, Hk=2))
            out.append(dict(D=D, causal=causal, Sq=2000, Sk=2000, B=2, Hq=8, Hk=8))
            out.append(dict(D=D, causal=causal, Sq=1500, Sk=200, B=2, Hq=16, Hk=4))
            out.append(dict(D=D, causal=causal, Sq=777, Sk=777, B=1, Hq=4, Hk=1,
                            layout="bshd"))
            out.append(dict(D=D, causal=causal, Sq=1023, Sk=1024, B=2, Hq=4, Hk=2,
                            dtype=torch.float16))
            for tile in selected_tiles(D):
                if tile.tail and not causal:  # a last wave that is cut on 132 SMs (the
                    # cases above have too few key blocks: the 1-D grid with every block
                    # whole), the default tile's too: 140 blocks with GQA and padded query
                    # rows; 160 with ragged keys, BSHD; fp16.  (Causal builds do not cut.)
                    bn = cuda_bwd.block_n_for(cuda_bwd.kernel_head_dim(D) or D)
                    out.append(dict(D=D, causal=causal, Sq=1000, Sk=35 * bn, B=1, Hq=8, Hk=4,
                                    tile=tuple(tile)))
                    out.append(dict(D=D, causal=causal, Sq=40 * bn - 17, Sk=40 * bn - 17, B=2,
                                    Hq=2, Hk=2, layout="bshd", tile=tuple(tile)))
                    out.append(dict(D=D, causal=causal, Sq=35 * bn, Sk=35 * bn, B=1, Hq=4,
                                    Hk=4, dtype=torch.float16, tile=tuple(tile)))
                if tile == cuda_bwd.default_tile(D, causal):
                    continue
                out.append(dict(D=D, causal=causal, Sq=1023, Sk=1031, B=2, Hq=4, Hk=2,
                                tile=tuple(tile)))
                out.append(dict(D=D, causal=causal, Sq=113, Sk=203, B=2, Hq=4, Hk=4,
                                tile=tuple(tile)))
                # one query block per CTA, then many (relay: its 2-deep ring wraps)
                if tile.s_ahead or tile.early_release or tile.fold or tile.relay:
                    out.append(dict(D=D, causal=causal, Sq=1, Sk=4096, B=2, Hq=4, Hk=4,
                                    tile=tuple(tile)))
                    out.append(dict(D=D, causal=causal, Sq=1500, Sk=200, B=2, Hq=16, Hk=4,
                                    tile=tuple(tile)))
                if tile.fold:  # an even and an odd number of key blocks, Sq < Sk, BSHD
                    out.append(dict(D=D, causal=causal, Sq=2048, Sk=2048, B=2, Hq=4, Hk=4,
                                    tile=tuple(tile)))
                    out.append(dict(D=D, causal=causal, Sq=900, Sk=1400, B=1, Hq=4, Hk=2,
                                    layout="bshd", tile=tuple(tile)))
    return out[::3] if quick else out


def case_id(c) -> str:
    dt = str(c.get("dtype", "torch.bfloat16"))[6:]
    return (f"d{c['D']} s{c['Sq']}x{c['Sk']} b{c['B']} h{c['Hq']}/{c['Hk']} "
            f"{'causal' if c['causal'] else 'full'} {dt} {c.get('layout', 'bhsd')}"
            + (f" tile {c['tile']}" if c.get("tile") else ""))


HANG_S = 20.0  # a launch not finished after this long is a hang (the largest case: ~50 ms)
_STATE: dict = {}  # what main() has so far, written out if a hang ends the process


def _wait_or_exit(label: str, timeout_s: float = HANG_S) -> None:
    """Poll the current stream (the backward is queued, not finished); if it does not
    drain in ``timeout_s``, log which case hung, write the results so far and exit: a hung
    kernel cannot be cancelled, and polling keeps the rest of the run's log."""
    import torch

    stream = torch.cuda.current_stream()
    t0 = time.time()
    while not stream.query():
        if time.time() - t0 > timeout_s:
            log = _STATE.get("log", print)
            log(f"HANG: {label} did not finish in {timeout_s:.0f} s; rerun it with "
                "cuda_bwd_check.run_traced to see which barrier")
            if "write" in _STATE:
                _STATE["write"]()
            sys.stdout.flush()
            os._exit(3)
        time.sleep(0.01)


def run_case(c) -> dict:
    """The tolerance rule on one case, NaN-poisoned memory, and the rerun comparison."""
    import torch
    from attnhub.testing.tolerance import compare_backward, random_inputs
    from attnhub_hopper import cuda_bwd, cuda_fwd

    cid = case_id(c)
    try:
        torch.manual_seed(zlib.crc32(cid.encode()))
        dtype = c.get("dtype", torch.bfloat16)
        p = _problem(c["B"], c["Hq"], c["Hk"], c["Sq"], c["Sk"], c["D"], dtype, c["causal"])
        q, k, v = random_inputs(p, layout=c.get("layout", "bhsd"))
        why = cuda_bwd.unsupported_reason(q, k, v, p)
        if why:
            raise RuntimeError(f"CUDA backward refused: {why}")
        o, lse = cuda_fwd.forward(q, k, v, p)
        do = torch.randn_like(o)
        tile = cuda_bwd.BwdTile(*c["tile"]) if c.get("tile") else None
        _poison(8 * q.numel() + 8 * k.numel())
        g1 = cuda_bwd.backward(do, q, k, v, o, lse, p, tile)
        _wait_or_exit(cid)
        res = compare_backward(g1, do, q, k, v, p)
        _poison(8 * q.numel() + 8 * k.numel())
        g2 = cuda_bwd.backward(do, q, k, v, o, lse, p, tile)
        _wait_or_exit(cid + " (rerun)")
        kv_same = bool(torch.equal(g1[1], g2[1]) and torch.equal(g1[2], g2[2]))
        dq_diff = float((g1[0].float() - g2[0].float()).abs().max())
        shapes = all(g.shape == t.shape and g.dtype == t.dtype for g, t in zip(g1, (q, k, v)))
        ok = all(r.ok for r in res) and kv_same and shapes
        return dict(id=cid, ok=ok, dkdv_deterministic=kv_same, dq_rerun_max_diff=dq_diff,
                    report=[str(r) for r in res])
    except Exception as exc:
        return dict(id=cid, ok=False, error=f"{type(exc).__name__}: {exc}"[:1500],
                    tb=traceback.format_exc()[-1500:])


_PHASES = {  # fa3_bwd.cu's trace values: 16 * block + phase
    "producer": {14: "K/V issued", 1: "stage free, Q/dO issued", 2: "all loads issued"},
    "consumer": {15: "K/V landed", 1: "Q landed", 2: "dO landed", 3: "S done",
                 4: "dS stored", 5: "past the dS barrier", 6: "products retired",
                 7: "at the epilogue barrier", 8: "past the epilogue barrier",
                 9: "stores issued"}}


def describe_trace(values, role: str) -> str:
    """Counts of (block, phase) over CTAs for one role's trace slot (fa3_bwd.cu)."""
    from collections import Counter

    names = _PHASES[role]

    def name(v):
        if v < 0:
            return "not started"
        it, ph = divmod(v, 16)
        return names.get(v, f"block {it}: {names.get(ph, ph)}")
    return ", ".join(f"{name(v)} x{n}" for v, n in sorted(Counter(values).items()))


def run_traced(q, k, v, p, tile=None, timeout_s: float = 15.0, log=print):
    """One backward with the tracing build, on a side stream, polled for ``timeout_s``.
    Returns the gradients; if the launch has not finished by then, logs where every role
    of every CTA stopped (from pinned host memory the kernel writes through) and exits the
    process (a hung kernel cannot be cancelled)."""
    import math

    import torch
    from attnhub_hopper import cuda_bwd, cuda_fwd

    o, lse = cuda_fwd.forward(q, k, v, p)
    do = torch.randn_like(o)
    bn = cuda_bwd.block_n_for(q.shape[-1])
    n_cta = math.ceil(k.shape[2] / bn) * k.shape[1] * k.shape[0]
    trace = torch.full((n_cta * 4,), -1, dtype=torch.int32).pin_memory()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        grads = cuda_bwd.backward(do, q, k, v, o, lse, p, tile, trace=trace)
    t0 = time.time()
    while not stream.query():
        if time.time() - t0 > timeout_s:
            tr = trace.view(n_cta, 4).tolist()
            log(f"HANG after {timeout_s:.0f} s ({n_cta} CTAs):")
            for slot, role in ((0, "producer"), (1, "consumer"), (2, "consumer")):
                log(f"  {role} {slot}: {describe_trace([r[slot] for r in tr], role)}")
            sys.stdout.flush()
            os._exit(3)
        time.sleep(0.05)
    torch.cuda.current_stream().wait_stream(stream)
    return o, do, grads


def build_all(log) -> list:
    import torch
    from attnhub_hopper import cuda_bwd

    from concurrent.futures import ThreadPoolExecutor

    specs = [(D, causal, dtype, tile) for dtype in (torch.bfloat16, torch.float16)
             for D in selected_dims() for causal in (False, True)
             for tile in selected_tiles(D)]
    dev = torch.cuda.current_device()

    def one(spec):
        D, causal, dtype, tile = spec
        t0 = time.time()
        rec = dict(D=D, causal=causal, dtype=str(dtype), tile=str(tile))
        try:
            cuda_bwd._kernel(dev, cuda_bwd.kernel_head_dim(D), causal, dtype, tile)
            return dict(rec, ok=True, s=round(time.time() - t0, 2))
        except Exception as exc:
            log(f"BUILD FAIL {rec}: {exc}"[:3000])
            return dict(rec, ok=False, error=str(exc)[:1500])

    with ThreadPoolExecutor(8) as ex:  # NVRTC releases the GIL
        return list(ex.map(one, specs))


def sdpa_bwd_fn(backend_name, q, k, v, do, causal):
    """``(fn, grads)``: ``fn()`` runs SDPA's backward alone through autograd (the graph is
    kept between calls), ``grads`` the leaves to reset between timed calls."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
    with sdpa_kernel(getattr(SDPBackend, backend_name)):
        o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
    o.backward(do, retain_graph=True)
    return (lambda: o.backward(do, retain_graph=True)), [qg, kg, vg]


def _sdpa_bwd(backend_name, q, k, v, do, causal):
    """Time of SDPA's backward alone (ms, do_bench median)."""
    return _bench(*sdpa_bwd_fn(backend_name, q, k, v, do, causal))


def passed_tiles(results) -> dict:
    """{head dim: [tiles]} whose every correctness case passed (``None`` = the default
    tile's cases: those without a ``tile``), so that one failing variant or head dim does
    not cost the timing of the rest."""
    from attnhub_hopper import cuda_bwd

    out = {}
    for D in selected_dims():
        mine = [r for r in results if r["case"]["D"] == D]
        ok = {}
        for r in mine:
            t = r["case"].get("tile")
            c = r["case"]  # a case without a tile ran the default for its own shape
            key = (cuda_bwd.default_tile(D, c["causal"], c["Sq"]) if t is None
                   else cuda_bwd.BwdTile(*t))
            ok[key] = ok.get(key, True) and r["ok"]
        out[D] = [t for t in selected_tiles(D) if ok.get(t, False)]
    return out


def phases(log, tiles=None, seqs=(1024, 4096, 16384)) -> list:
    """Where each consumer warpgroup's cycles go (cuda_bwd.phase_profile, the BWD_PROF
    build) for the FA grid's shapes: the question before ping-pong (NOTES.md) is how much
    of a block is the softmax/dS phase and how much the waits for the products.
    ``tiles`` ({D: [tiles]}); None: the shipped tile of each point."""
    import torch
    from attnhub_hopper import cuda_bwd, cuda_fwd

    rows = []
    for D in selected_dims():
        for S in seqs:
            for causal in (False, True):
                p, q, k, v = fa_point(D, S, causal)
                o, lse = cuda_fwd.forward(q, k, v, p)
                do = torch.randn_like(o)
                for tile in (tiles.get(D, []) if tiles is not None
                             else [cuda_bwd.default_tile(D, causal, S)]):
                    prof = cuda_bwd.phase_profile(do, q, k, v, o, lse, p, tile)
                    rows.append(dict(D=D, S=S, causal=causal, tile=str(tile), **prof))
                    shares = " ".join(f"{n} {x:.1%}" for n, x in prof["share"].items()
                                      if x >= 0.005)
                    log(f"phases d{D} s{S:>5} {'causal' if causal else 'full  '} {tile}: "
                        f"{prof['cycles'] / max(prof['blocks'], 1):.0f} cycles/block | "
                        f"vs plain build {prof['max_diff_vs_plain']} | SMs busy "
                        f"{prof['packing']['busy']:.1%} | {shares}")
                del q, k, v, o, do
    return rows


def grid(log, quick, tiles=None) -> list:
    """The timing grid; ``tiles`` ({D: [tiles]}, default: every variant) limits what runs."""
    import torch
    from attnhub_hopper import cuda_bwd, cuda_fwd

    try:
        from attnhub_triton.ops import flash_backward
    except ImportError:
        flash_backward = None
    rows = []
    for D in selected_dims():
        timed_tiles = selected_tiles(D) if tiles is None else tiles.get(D, [])
        if not timed_tiles:
            log(f"d{D}: no variant passed the correctness cases; not timed")
            continue
        for S in ((4096, 16384) if quick else GRID_S):
            for causal in (False, True):
                p, q, k, v = fa_point(D, S, causal)
                B, H = q.shape[:2]
                o, lse = cuda_fwd.forward(q, k, v, p)
                do = torch.randn_like(o)
                flops = 2.5 * 4 * B * H * S * S * D / (2 if causal else 1)
                tf = lambda ms: flops / ms / 1e9  # noqa: E731
                row = dict(D=D, S=S, causal=causal, B=B, H=H, peers={}, variants={})
                for tile in timed_tiles:
                    try:
                        cuda_bwd.backward(do, q, k, v, o, lse, p, tile)
                        _wait_or_exit(f"grid d{D} s{S} causal={causal} {tile}")
                        row["variants"][str(tile)] = tf(_bench(
                            lambda: cuda_bwd.backward(do, q, k, v, o, lse, p, tile)))
                    except Exception as exc:
                        row["variants"][str(tile)] = None
                        row.setdefault("errors", {})[str(tile)] = str(exc)[:500]
                row["default_tile"] = str(cuda_bwd.default_tile(D, causal, S))
                row["default_tflops"] = row["variants"].get(row["default_tile"])
                if flash_backward is not None:
                    try:
                        row["peers"]["triton-fa2"] = tf(_bench(
                            lambda: flash_backward(do, q, k, v, o, lse, p)))
                    except Exception as exc:
                        log(f"triton-fa2 d{D} s{S}: {exc}"[:300])
                for name, be in (("cudnn", "CUDNN_ATTENTION"), ("flash", "FLASH_ATTENTION"),
                                 ("efficient", "EFFICIENT_ATTENTION")):
                    try:
                        row["peers"][name] = tf(_sdpa_bwd(be, q, k, v, do, causal))
                    except Exception as exc:
                        log(f"{name} d{D} s{S}: {exc}"[:300])
                cu = row["peers"].get("cudnn")
                fl = row["peers"].get("flash")
                ours = row["default_tflops"]
                row["x_cudnn"] = ours / cu if ours and cu else None
                row["x_flash"] = ours / fl if ours and fl else None
                rows.append(row)
                peers = " ".join(f"{n} {t:.0f}" for n, t in row["peers"].items())
                variants = " ".join(f"{n} {t or 0:.0f}" for n, t in row["variants"].items())
                log(f"d{D} s{S:>5} {'causal' if causal else 'full  '} cuda-bwd [{variants}]"
                    f" | {peers} | default x cudnn {row['x_cudnn'] or 0:.3f}")
                del q, k, v, o, lse, do
                torch.cuda.empty_cache()
    return rows


def plot_phases(json_path: str, png_path: str) -> None:
    """The BWD_PROF split (``phases`` rows, from ``--phases`` or device_bwd_phases.sh) as
    stacked bars: one bar per (head dim, seqlen, causal, tile), shares of consumer cycles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from attnhub_hopper.cuda_bwd import PROF_PHASES

    with open(json_path) as f:
        data = json.load(f)
    rows = data.get("rows") or data.get("phases") or []
    labels = [f"d{r['D']} {r['S'] // 1024}k {'c' if r['causal'] else 'n'}\n{r['tile']}"
              for r in rows]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(rows)), 4.8))
    bottom = [0.0] * len(rows)
    for name in PROF_PHASES:
        vals = [r["share"].get(name, 0.0) for r in rows]
        if not any(vals):
            continue
        ax.bar(range(len(rows)), vals, bottom=bottom, label=name)
        bottom = [b + x for b, x in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
    ax.set_ylabel("share of consumer cycles")
    ax.set_title(f"hopper-fa3 backward phases (BWD_PROF), {data.get('device', '')} "
                 f"{data.get('date', '')}", fontsize=10)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def plot(json_path: str, png_path: str) -> None:
    """Backward TFLOP/s against seqlen, one panel per head dim × causal, same run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        data = json.load(f)
    rows = data["grid"]
    dims = sorted({r["D"] for r in rows})
    fig, axes = plt.subplots(2, len(dims), figsize=(4.6 * len(dims), 7), squeeze=False)
    for j, D in enumerate(dims):
        for i, causal in enumerate((False, True)):
            ax = axes[i][j]
            sel = sorted((r for r in rows if r["D"] == D and r["causal"] == causal),
                         key=lambda r: r["S"])
            xs = [r["S"] for r in sel]
            series = {f"hopper-fa3 CUDA backward {v}": [r["variants"].get(v) for r in sel]
                      for v in sorted({v for r in sel for v in r.get("variants", {})})}
            for key, label in (("cudnn", "cuDNN (SDPA)"), ("flash", "SDPA flash (FA2)"),
                               ("efficient", "SDPA efficient"), ("triton-fa2", "triton-fa2")):
                series[label] = [r["peers"].get(key) for r in sel]
            for name, ys in series.items():
                ax.plot(xs, [y if y is not None else float("nan") for y in ys], marker="o",
                        label=name)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [f"{x // 1024}k" for x in xs])
            ax.set_title(f"d{D} {'causal' if causal else 'non-causal'} backward")
            ax.set_xlabel("seqlen")
            ax.set_ylabel("TFLOP/s")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{data['device']}, bf16 backward, {data['date']} (one run)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--plot-from", metavar="JSON", help="only draw the PNG of a results JSON")
    ap.add_argument("--plot-phases-from", metavar="JSON",
                    help="only draw the phase-split PNG of a --phases / bwd_phases JSON")
    ap.add_argument("--dims", type=lambda x: [int(d) for d in x.split(",")],
                    help="head dims to check and time, e.g. 128,64 (default: all)")
    ap.add_argument("--phases", action="store_true",
                    help="also the BWD_PROF phase split of the variants that passed (1k, 4k, "
                         "16k; causal and not)")
    ap.add_argument("--tiles", type=lambda x: x.split(","),
                    help="variants by name, e.g. s2-ahead,s2-release (the default tile "
                         "always runs; default: every variant that builds)")
    args = ap.parse_args()
    _SELECT.update(dims=args.dims, tiles=args.tiles)
    unknown = set(args.tiles or ()) - {str(t) for D in selected_dims()
                                       for t in selected_tiles(D)}
    if unknown or not selected_dims():
        ap.error(f"--tiles {sorted(unknown)} / --dims {args.dims}: no such variant or head dim "
                 "(see cuda_bwd.tiles_for)")
    if args.plot_from:
        return plot_only(plot, args.plot_from)
    if args.plot_phases_from:
        return plot_only(plot_phases, args.plot_phases_from)
    os.environ["ATTNHUB_HOPPER_CUDA_BWD"] = "1"  # what this script checks
    os.environ["ATTNHUB_HOPPER_CUDA_UNVERIFIED"] = "1"  # the padded head dims too
    os.makedirs(args.out, exist_ok=True)
    import torch

    log = tee_log(os.path.join(args.out, "cuda_bwd_log.txt"))

    from attnhub_hopper import cuda_fwd

    log(f"{torch.cuda.get_device_name()} torch {torch.__version__} "
        f"{time.strftime('%Y-%m-%d %H:%M')}")
    log(f"import: {cuda_fwd._import_reason() or 'ok'}")
    t0 = time.time()
    builds = build_all(log)
    log(f"builds: {sum(b['ok'] for b in builds)}/{len(builds)} in {time.time() - t0:.1f} s")
    results = []
    data = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                date=time.strftime("%Y-%m-%d"), builds=builds, cases=results, grid=[])
    js = os.path.join(args.out, "cuda_bwd.json")

    def write():
        with open(js, "w") as f:
            json.dump(data, f, indent=1, default=str)

    _STATE.update(log=log, write=write)
    for c in cases(args.quick):
        r = dict(run_case(c), case={k: (str(v) if k == "dtype" else v) for k, v in c.items()})
        results.append(r)
        if not r["ok"]:
            log(f"FAIL {r['id']}: {r.get('error') or r.get('report')} "
                f"dkdv_det={r.get('dkdv_deterministic')}\n{r.get('tb', '')}")
    n_ok = sum(r["ok"] for r in results)
    log(f"correctness: {n_ok}/{len(results)} passed")
    for r in results[:6]:
        log(f"  {r['id']}: {r.get('report')} dq rerun diff {r.get('dq_rerun_max_diff')}")
    write()
    tiles = passed_tiles(results)
    log("timed (every correctness case passed): "
        + "; ".join(f"d{D} {[str(t) for t in ts]}" for D, ts in tiles.items()))
    if args.phases:
        data["phases"] = phases(log, tiles)
        write()
        plot_phases(js, os.path.join(args.out, "cuda_bwd_phases.png"))
    rows = [] if args.no_grid else grid(log, args.quick, tiles)
    data["grid"] = rows
    write()
    if rows:
        plot(js, os.path.join(args.out, "cuda_bwd.png"))
    log(f"correctness: {n_ok}/{len(results)} passed; timed only the variants whose cases "
        "all passed")


if __name__ == "__main__":
    main()
