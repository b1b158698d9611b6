#!/usr/bin/env python3
"""Check and time the Gluon FlashAttention forward (``_gluon_fwd.py``) on an H100.

    python3 backends/attnhub_triton/gluon_check.py --out $OUT/gluon
    python3 backends/attnhub_triton/gluon_check.py --cases quick --no-bench
    python3 backends/attnhub_triton/gluon_check.py --variants pp,pp:stages=3,simple --out x.json
    python3 backends/attnhub_triton/gluon_check.py --compile-only      # no GPU, no torch

Self-contained: the kernel module is loaded by file path, not through the attnhub package.

1. correctness -- one child process per variant (a barrier deadlock costs that child's
   --timeout, not the run), several at once.  Every case: fresh random inputs, O and LSE
   pre-filled with NaN, reference in float32 from the same inputs, tolerance
   max|O - ref| <= 2 * max|SDPA(q, k, v) in q's dtype - ref| + 1e-5 over rows that see a key;
   rows that see no key: O == 0 and LSE == -inf exactly; |LSE - ref| <= 1e-3 where finite;
   no NaN anywhere.  One line per case, then ``correctness: N/M passed (T s)``.
2. bench (only if every case of every variant passed, unless --bench-anyway) -- in one child
   process: FA grid points B = 16384 // S, H = 2048 // D, bf16, each variant and SDPA cuDNN /
   FLASH interleaved point by point, triton.testing.do_bench medians; TFLOP/s with
   FLOPs = 4 B H S^2 D (halved when causal) and the ratio to cuDNN.
JSON (cases, compile facts, bench) goes to --out (a .json path, or a directory that gets
gluon_check.json); the log is printed.

Variant specs: a name of _gluon_fwd.VARIANTS (simple, overlap, ws2, pp) with optional knobs,
``name:block_n=64:stages=3:split_wait=0``.  A knob combination the launcher rejects (e.g.
too much shared memory at d256) is reported as SKIP, not counted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_FILE = os.path.join(HERE, "_gluon_fwd.py")
DEFAULT_VARIANTS = "simple,overlap,ws2,pp,pp:stages=3"


_harness_spec = importlib.util.spec_from_file_location(
    "attnhub_gluon_harness", os.path.join(HERE, "_gluon_harness.py"))
harness = importlib.util.module_from_spec(_harness_spec)
_harness_spec.loader.exec_module(harness)


def load_kernel_module():
    return harness.load_kernel(KERNEL_FILE)


def parse_variant(spec):
    """'pp:block_n=64:stages=3' -> ('pp', {'block_n': 64, 'stages': 3}) (the kernel module's
    ``parse_spec``, which the backend's variant table uses too)."""
    return load_kernel_module().parse_spec(spec)


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------


# More tiles than an H100 has SMs (132), so a persistent CTA walks two or three: short
# ragged tiles under GQA, and long causal ones of unequal length; and 133 tiles (one per
# head), where one CTA of the dynamic schedule takes a second tile and the rest stop.
_MANY_TILES = [(4, 32, 4, 200, 333, 64, True, "bf16"), (4, 32, 4, 200, 333, 128, False, "fp16"),
               (2, 16, 16, 1500, 1500, 128, True, "bf16"), (2, 16, 8, 1500, 1100, 64, True, "fp16"),
               (1, 133, 7, 100, 300, 64, True, "bf16")]


def case_list(which):
    """(B, Hq, Hk, Sq, Sk, D, causal, dtype) tuples: "quick", "all", or "d256" (all's d256
    cases alone)."""
    if which == "d256":
        return [c for c in case_list("all") if c[5] == 256]
    cases = []
    if which == "quick":
        for d in (64, 128):
            for causal in (False, True):
                cases.append((2, 4, 4, 1000, 1000, d, causal, "bf16"))
                cases.append((2, 4, 4, 113, 203, d, causal, "bf16"))
            cases.append((2, 8, 2, 1000, 1000, d, True, "bf16"))
        cases.append((2, 4, 4, 203, 113, 128, True, "fp16"))  # rows that see no key
        cases.append((2, 4, 4, 4096, 4096, 128, False, "fp16"))
        cases.append((2, 4, 4, 1, 4096, 64, True, "bf16"))
        cases.extend(_MANY_TILES)
        return cases
    for d in (64, 128):
        for causal in (False, True):
            for dt in ("bf16", "fp16"):
                for sq, sk in ((128, 128), (1000, 1000), (4096, 4096), (113, 203), (1, 4096),
                               (203, 113)):
                    cases.append((2, 4, 4, sq, sk, d, causal, dt))
                cases.append((2, 8, 2, 1000, 1000, d, causal, dt))  # GQA 8 / 2
                cases.append((2, 8, 2, 113, 203, d, causal, dt))
    cases.extend(_MANY_TILES)
    for causal in (False, True):  # d256 where the variant fits (block_n 64, 2 stages)
        cases.append((2, 4, 4, 1000, 1000, 256, causal, "bf16"))
        cases.append((2, 8, 2, 113, 203, 256, causal, "fp16"))
    return cases


def case_name(c):
    B, Hq, Hk, Sq, Sk, D, causal, dt = c
    return f"B{B} H{Hq}/{Hk} Sq{Sq} Sk{Sk} d{D} {'causal' if causal else 'full'} {dt}"


def reference_fp32(q, k, v, causal, scale):
    """float32 O, LSE (natural log), and the per-row 'sees a key' mask."""
    import torch
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    g = Hq // Hk
    kf = k.float().repeat_interleave(g, dim=1)
    vf = v.float().repeat_interleave(g, dim=1)
    o = torch.empty(B, Hq, Sq, D, device=q.device, dtype=torch.float32)
    lse = torch.empty(B, Hq, Sq, device=q.device, dtype=torch.float32)
    i = torch.arange(Sq, device=q.device)[:, None]
    j = torch.arange(Sk, device=q.device)[None, :]
    allowed = (j <= i + (Sk - Sq)) if causal else torch.ones(Sq, Sk, dtype=torch.bool,
                                                            device=q.device)
    for b in range(B):  # one batch at a time: S at 4096^2 x 8 heads is 512 MB in fp32
        s = torch.matmul(q[b].float(), kf[b].transpose(-1, -2)) * scale
        s = s.masked_fill(~allowed, float("-inf"))
        lse[b] = torch.logsumexp(s, dim=-1)
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        o[b] = torch.matmul(p, vf[b])
    sees = allowed.any(dim=-1)  # (Sq,)
    return o, lse, sees, allowed


def sdpa_lowprec(q, k, v, allowed, scale):
    """torch SDPA in q's dtype with the same mask: torch's own low-precision error."""
    import torch
    import torch.nn.functional as F
    g = q.shape[1] // k.shape[1]
    ke = k.repeat_interleave(g, dim=1)
    ve = v.repeat_interleave(g, dim=1)
    out = F.scaled_dot_product_attention(q, ke, ve, attn_mask=allowed, scale=scale)
    return out


def run_case(mod, case, variant, knobs, seed):
    import torch
    B, Hq, Hk, Sq, Sk, D, causal, dt = case
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
    gen = torch.Generator(device="cuda").manual_seed(seed)
    knobs = dict(knobs)
    layout = knobs.pop("bshd", 0)  # 1: q, k, v, O as (B, S, H, D); 2: q, k, v packed
    if layout == 2 and Hq != Hk:
        return {"status": "SKIP", "why": "a packed (B, S, 3, H, D) QKV needs Hq == Hk"}
    if layout == 2 and Sq != Sk:
        return {"status": "SKIP", "why": "a packed (B, S, 3, H, D) QKV needs Sq == Sk"}
    if layout == 2:
        qkv = torch.randn(B, Sq, 3, Hq, D, device="cuda", dtype=dtype, generator=gen)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    elif layout == 1:
        q = torch.randn(B, Sq, Hq, D, device="cuda", dtype=dtype, generator=gen).transpose(1, 2)
        k = torch.randn(B, Sk, Hk, D, device="cuda", dtype=dtype, generator=gen).transpose(1, 2)
        v = torch.randn(B, Sk, Hk, D, device="cuda", dtype=dtype, generator=gen).transpose(1, 2)
    else:
        q = torch.randn(B, Hq, Sq, D, device="cuda", dtype=dtype, generator=gen)
        k = torch.randn(B, Hk, Sk, D, device="cuda", dtype=dtype, generator=gen)
        v = torch.randn(B, Hk, Sk, D, device="cuda", dtype=dtype, generator=gen)
    scale = 1.0 / math.sqrt(D)
    try:
        mod.resolve_config(D, variant=variant, **knobs)
    except ValueError as exc:
        return {"status": "SKIP", "why": str(exc)}
    # O poisoned, in q's layout (empty_like keeps (B, S, H, D) strides); packed q: (B, S, H, D)
    o = (torch.empty(B, Sq, Hq, D, device="cuda", dtype=dtype).transpose(1, 2) if layout
         else torch.empty_like(q)).fill_(float("nan"))
    lse = torch.full((B, Hq, Sq), float("nan"), device="cuda", dtype=torch.float32)
    mod.gluon_attention_fwd(q, k, v, causal=causal, softmax_scale=scale, variant=variant,
                            out=o, lse_out=lse, **knobs)
    torch.cuda.synchronize()
    ref_o, ref_lse, sees, allowed = reference_fp32(q, k, v, causal, scale)
    low = sdpa_lowprec(q, k, v, allowed, scale).float()
    rows = sees[None, None, :].expand(B, Hq, Sq)
    of = o.float()
    nan_o = int(torch.isnan(of).sum())
    nan_l = int(torch.isnan(lse).sum())
    if rows.any():
        err_o = float((of - ref_o).abs()[rows].max())
        err_t = float((low - ref_o).abs()[rows].nan_to_num(0.0).max())
        fin = torch.isfinite(ref_lse) & rows
        err_l = float((lse - ref_lse).abs()[fin].max()) if fin.any() else 0.0
    else:
        err_o = err_t = err_l = 0.0
    empty_ok = True
    if (~rows).any():
        empty_ok = bool((of[~rows] == 0).all()) and bool((lse[~rows] == float("-inf")).all())
    tol = 2.0 * err_t + 1e-5
    ok = nan_o == 0 and nan_l == 0 and err_o <= tol and err_l <= 1e-3 and empty_ok
    k_obj = mod._LAST.get("kernel")
    facts = {}
    if k_obj is not None:
        try:
            facts = {"n_regs": int(k_obj.n_regs), "n_spills": int(k_obj.n_spills),
                     "shared": int(k_obj.metadata.shared)}
        except Exception:
            pass
    return {"status": "PASS" if ok else "FAIL", "err_o": err_o, "tol_o": tol, "err_torch": err_t,
            "err_lse": err_l, "nan_o": nan_o, "nan_lse": nan_l, "empty_rows_ok": empty_ok,
            **facts}


def child_correct(spec, which):
    """Runs in a child process: every case for one variant, one JSON line per case."""
    name, knobs = parse_variant(spec)
    try:
        mod = load_kernel_module()
        ok, why = mod.gluon_available()
        if not ok:
            raise RuntimeError(why)
    except Exception as exc:
        print(json.dumps({"variant": spec, "case": "<setup>", "status": "FAIL",
                          "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    broken = None  # compile errors are per (variant, specialisation); keep going
    for idx, case in enumerate(case_list(which)):
        rec = {"variant": spec, "case": case_name(case)}
        try:
            rec.update(run_case(mod, case, name, knobs, seed=1234 + idx))
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            rec.update({"status": "FAIL", "error": msg[-2000:]})
            if "CompilationError" in msg or "compil" in msg.lower():
                broken = msg
        print(json.dumps(rec), flush=True)
    if broken:
        print(json.dumps({"variant": spec, "case": "<note>", "status": "INFO",
                          "error": "compile error(s) in this variant"}), flush=True)


# --------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------

BENCH_POINTS = [(S, D, causal) for D in (64, 128) for S in (2048, 4096, 8192, 16384)
                for causal in (False, True)]


def child_bench(specs, rounds, points):
    import torch
    import triton
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    mod = load_kernel_module()
    variants = [(s,) + parse_variant(s) for s in specs]
    for S, D, causal in points:
        B, H = 16384 // S, 2048 // D
        gen = torch.Generator(device="cuda").manual_seed(S + D)
        q = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        flops = 4.0 * B * H * S * S * D * (0.5 if causal else 1.0)
        # the same values in (B, S, H, D) memory, for variants with bshd=1 (flash-attn's layout)
        bshd = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v)] \
            if any(kn.get("bshd") for _, _, kn in variants) else None
        fns = {}
        for spec, name, knobs in variants:
            knobs = dict(knobs)
            qkv = bshd if knobs.pop("bshd", 0) else (q, k, v)
            try:
                mod.resolve_config(D, variant=name, **knobs)
            except ValueError:
                continue
            o = torch.empty_like(qkv[0])
            lse = torch.empty(B, H, S, device="cuda", dtype=torch.float32)
            fns[spec] = (lambda name=name, knobs=knobs, o=o, lse=lse, qkv=qkv:
                         mod.gluon_attention_fwd(*qkv, causal=causal, variant=name, out=o,
                                                 lse_out=lse, **knobs))
        for label, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                               ("flash", SDPBackend.FLASH_ATTENTION)):
            def run(backend=backend):
                with sdpa_kernel(backend):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            fns[label] = run
        times = {key: [] for key in fns}
        errors = {}
        for _ in range(rounds):  # interleaved: every impl once per round, same inputs
            for key, fn in fns.items():
                if key in errors:
                    continue
                try:
                    fn()
                    torch.cuda.synchronize()
                    times[key].append(triton.testing.do_bench(fn, warmup=25, rep=100,
                                                              return_mode="median"))
                except Exception as exc:
                    errors[key] = f"{type(exc).__name__}: {str(exc)[-500:]}"
        res = {"S": S, "D": D, "causal": causal, "B": B, "H": H, "ms": {}, "tflops": {},
               "x_cudnn": {}, "errors": errors}
        for key, ts in times.items():
            if ts:
                ms = sorted(ts)[len(ts) // 2]
                res["ms"][key] = ms
                res["tflops"][key] = flops / (ms * 1e-3) / 1e12
        c = res["tflops"].get("cudnn")
        for key, tf in res["tflops"].items():
            res["x_cudnn"][key] = tf / c if c else None
        print(json.dumps(res), flush=True)
        del q, k, v, fns, bshd
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# compile-only (no GPU): regs / smem / spills / HGMMA per variant and specialisation
# --------------------------------------------------------------------------------------


def _wait_pattern(sass):
    """MUFU.EX2 runs between the wgmma waits, e.g. "W0 ex2*66 W1 ex2*66 W0": exps between
    the loop's two waits = the intra-warpgroup overlap is real."""
    seq = []
    for ln in sass.splitlines():
        if "WARPGROUP.DEPBAR" in ln:
            seq.append("W" + ln.split("gsb0,")[1].split(";")[0].strip()[-1])
        elif "MUFU.EX2" in ln:
            seq.append("E")
    pattern, n = [], 0
    for e in seq:
        if e == "E":
            n += 1
            continue
        if n:
            pattern.append(f"ex2*{n}")
            n = 0
        pattern.append(e)
    text = " ".join(pattern)
    return {"wait_pattern": text}, text


def compile_only(specs, dims):
    return harness.compile_table(load_kernel_module(), specs, dims, parse_variant,
                                 extra=_wait_pattern)



# --------------------------------------------------------------------------------------
# CPU emulation of the kernel's block schedule (no GPU): the same n_blocks / n_full /
# limit arithmetic, base-2 online softmax with the -inf guard, P rounded to q's dtype,
# per CTA tile and per consumer row slice, against the float32 reference.
# --------------------------------------------------------------------------------------


def run_exp2_mix_ptx(asm, n, x):
    """Execute ``_gluon_fwd.exp2_mix_ptx(n)`` -- the inline PTX of the kernel's ``exp_poly``
    knob, as text -- on the CPU: x (float32, a multiple of n elements) taken n at a time as
    its inputs $n..$2n-1; returns its outputs $0..$n-1 in the same places.  Only the
    instructions that PTX uses are known (ex2.approx.ftz as exact exp2, fp32 add / sub, fma
    with one rounding, b32 shifts and wrapping adds, setp / selp, max.NaN); any other raises,
    so a changed PTX cannot pass unexecuted."""
    import torch
    x = x.to(torch.float32).reshape(-1, n)
    regs = {f"${n + i}": x[:, i].contiguous().view(torch.int32) for i in range(n)}
    f32 = lambda r: r.view(torch.float32)  # noqa: E731
    b32 = lambda t: t.to(torch.float32).view(torch.int32)  # noqa: E731

    def val(tok):
        tok = tok.strip()
        if tok.startswith("0f"):
            return torch.tensor(int(tok[2:], 16), dtype=torch.int64).to(torch.int32).expand(len(x))
        if tok.lstrip("-").isdigit():
            return int(tok)
        return regs[tok]

    for ins in asm.replace("{", ";").replace("}", ";").split(";"):
        ins = ins.strip()
        if not ins or ins.startswith(".reg"):
            continue
        op, _, rest = ins.partition(" ")
        d, *src = [t.strip() for t in rest.split(",")]
        a = [val(t) for t in src]
        if op == "ex2.approx.ftz.f32":
            r = torch.exp2(f32(a[0]).double()).float()
            regs[d] = b32(torch.where(r.abs() < 2.0 ** -126, torch.zeros_like(r), r))
        elif op in ("add.rn.f32", "sub.rn.f32"):
            r = f32(a[0]) + f32(a[1]) if op[0] == "a" else f32(a[0]) - f32(a[1])
            regs[d] = b32(r)
        elif op == "fma.rn.f32":
            regs[d] = b32((f32(a[0]).double() * f32(a[1]).double() + f32(a[2]).double()).float())
        elif op == "shl.b32":
            regs[d] = (a[0].to(torch.int64) << a[1]).to(torch.int32)
        elif op == "add.s32":
            regs[d] = ((a[0].to(torch.int64) + a[1].to(torch.int64)) & 0xFFFFFFFF).to(torch.int32)
        elif op == "setp.ge.f32":
            regs[d] = f32(a[0]) >= f32(a[1])
        elif op == "max.NaN.f32":
            u, w = f32(a[0]), f32(a[1])
            nan = torch.isnan(u) | torch.isnan(w)
            regs[d] = b32(torch.where(nan, torch.full_like(u, float("nan")), torch.maximum(u, w)))
        elif op == "selp.b32":
            regs[d] = torch.where(a[2], a[0], a[1])
        else:
            raise ValueError(f"run_exp2_mix_ptx: unknown instruction {ins!r}")
    return torch.stack([f32(regs[f"${i}"]) for i in range(n)], 1).reshape(-1)


def emulate(q, k, v, causal, scale, block_m=128, rows_per_wg=64, block_n=128, lazy=0,
            stats=None, exp_poly=0):
    """lazy > 0: the kernel's ``_softmax_block_lazy`` from the second block on (a
    partition's row maxima move, and O is rescaled, only when one of its rows grew by more
    than ``lazy``); ``stats`` (a dict) counts the blocks that rescaled and those that did not.
    exp_poly = n > 0: P's exp2 through the kernel's own PTX for that knob
    (``run_exp2_mix_ptx``), one score in n by its polynomial."""
    import torch
    mix = load_kernel_module().exp2_mix_ptx(exp_poly) if exp_poly else None
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    group = Hq // Hk
    qk_scale = scale * 1.4426950408889634
    o = torch.full((B, Hq, Sq, D), float("nan"))
    lse = torch.full((B, Hq, Sq), float("nan"))
    n_m = (Sq + block_m - 1) // block_m
    for b in range(B):
        for hq in range(Hq):
            hk = hq // group
            for pid in range(n_m):
                m0 = pid * block_m
                if causal:
                    kv_end = max(min(Sk, min(m0 + block_m, Sq) + (Sk - Sq)), 0)
                    n_full = min(max(m0 + (Sk - Sq) + 1, 0) // block_n, Sk // block_n)
                else:
                    kv_end, n_full = Sk, Sk // block_n
                n_blocks = (kv_end + block_n - 1) // block_n
                for wg in range(block_m // rows_per_wg):
                    row0 = m0 + wg * rows_per_wg
                    rows = torch.arange(row0, row0 + rows_per_wg)
                    qt = torch.zeros(rows_per_wg, D)  # TMA zero-fill past Sq
                    valid = rows < Sq
                    qt[valid] = q[b, hq, rows[valid]].float()
                    m_i = torch.full((rows_per_wg,), float("-inf"))
                    l_i = torch.zeros(rows_per_wg)
                    acc = torch.zeros(rows_per_wg, D)
                    for j in range(n_blocks):
                        cols = torch.arange(j * block_n, (j + 1) * block_n)
                        kt = torch.zeros(block_n, D)
                        vt = torch.zeros(block_n, D)
                        cv = cols < Sk
                        kt[cv] = k[b, hk, cols[cv]].float()
                        vt[cv] = v[b, hk, cols[cv]].float()
                        s = qt @ kt.T
                        if j >= n_full:
                            if causal:
                                limit = torch.minimum(rows + (Sk - Sq), torch.tensor(Sk - 1))
                            else:
                                limit = torch.full_like(rows, Sk - 1)
                            s = torch.where(cols[None, :] <= limit[:, None], s, float("-inf"))
                        m_new = torch.maximum(m_i, s.max(dim=1).values * qk_scale)
                        grow = True
                        if lazy and j > 0:  # the prologue's block always sets the maxima
                            grow = bool((m_new > m_i + lazy).any())
                            m_new = m_new if grow else m_i
                            if stats is not None:
                                key = "rescaled" if grow else "kept"
                                stats[key] = stats.get(key, 0) + 1
                        m_use = torch.where(m_new == float("-inf"), 0.0, m_new)
                        x = s * qk_scale - m_use[:, None]
                        if mix:
                            p = run_exp2_mix_ptx(mix, exp_poly, x).reshape(x.shape)
                        else:
                            p = torch.exp2(x)
                        alpha = torch.exp2(m_i - m_use)
                        l_i = l_i * alpha + p.sum(1)
                        m_i = m_new
                        if grow:
                            acc = acc * alpha[:, None]
                        acc = acc + p.to(q.dtype).float() @ vt
                    empty = l_i == 0
                    l_safe = torch.where(empty, 1.0, l_i)
                    out_l = torch.where(empty, float("-inf"), (m_i + torch.log2(l_safe)) * 0.6931471805599453)
                    out_o = (acc / l_safe[:, None]).to(q.dtype).float()
                    o[b, hq, rows[valid]] = out_o[valid]  # TMA store clips rows >= Sq
                    lse[b, hq, rows[valid]] = out_l[valid]
    return o, lse


def emulate_check(n_cases=None):
    import torch
    torch.manual_seed(0)
    cases = [(1, 2, 2, 113, 203, 64, c, "bf16") for c in (False, True)]
    cases += [(1, 2, 2, 203, 113, 64, True, "fp16"), (1, 4, 2, 300, 300, 64, True, "bf16"),
              (1, 2, 2, 1, 300, 64, True, "bf16"), (1, 2, 2, 257, 257, 64, False, "bf16"),
              (1, 2, 1, 130, 390, 128, True, "bf16")]
    n_ok = 0
    for case in cases[:n_cases]:
        B, Hq, Hk, Sq, Sk, D, causal, dt = case
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
        q = torch.randn(B, Hq, Sq, D).to(dtype)
        k = torch.randn(B, Hk, Sk, D).to(dtype)
        v = torch.randn(B, Hk, Sk, D).to(dtype)
        scale = D ** -0.5
        ref_o, ref_l, sees, allowed = reference_fp32(q, k, v, causal, scale)
        res = []
        for bm, rw, bn, lazy in ((128, 64, 128, 0), (128, 128, 128, 0), (128, 64, 64, 0),
                                 (192, 64, 128, 0), (192, 64, 64, 0), (128, 64, 128, 8),
                                 (128, 64, 64, 1)):
            o, lse = emulate(q, k, v, causal, scale, bm, rw, bn, lazy)
            rows = sees[None, None, :].expand(B, Hq, Sq)
            err = float((o - ref_o).abs()[rows].max()) if rows.any() else 0.0
            fin = torch.isfinite(ref_l)
            errl = float((lse - ref_l).abs()[fin].max()) if fin.any() else 0.0
            empty_ok = bool((o[~rows] == 0).all()) and bool((lse[~rows] == float("-inf")).all())
            nan = int(torch.isnan(o).sum() + torch.isnan(lse).sum())
            ok = err < 3e-2 and errl < 1e-4 and empty_ok and nan == 0
            res.append(ok)
            print(f"{'PASS' if ok else 'FAIL'} emulate {case_name(case)} tile m{bm}/wg{rw}/n{bn}"
                  f"{f' lazy {lazy}' if lazy else ''}: "
                  f"|O-ref| {err:.2e} |LSE-ref| {errl:.2e} empty_ok {empty_ok} nan {nan}")
        n_ok += all(res)
    print(f"emulation: {n_ok}/{len(cases[:n_cases])} cases passed")

def plot_bench(path):
    """TFLOP/s against seqlen, one panel per (head dim, causal), every timed column of the
    report at ``path``; the PNG goes beside it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    report = json.load(open(path))
    recs = report.get("bench") or []
    if not recs:
        raise SystemExit(f"{path}: no bench records to plot")
    panels = sorted({(r["D"], r["causal"]) for r in recs})
    cols = sorted({c for r in recs for c in r["tflops"]}, key=lambda c: (c in ("cudnn", "flash"), c))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (d, causal) in zip(axes[0], panels):
        rows = sorted((r for r in recs if r["D"] == d and r["causal"] == causal), key=lambda r: r["S"])
        for i, c in enumerate(cols):  # one colour a column in every panel
            pts = [(r["S"], r["tflops"][c]) for r in rows if r["tflops"].get(c)]
            if pts:
                style = "--" if c in ("cudnn", "flash") else "-"
                ax.plot(*zip(*pts), style, marker="o", label=c, color=f"C{i % 10}")
        ax.set_xscale("log", base=2)
        ax.set_title(f"d{d} {'causal' if causal else 'non-causal'}")
        ax.set_xlabel("seqlen")
        ax.set_ylabel("TFLOP/s")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    kind = "backward" if "gluon_bwd_check" in " ".join(report.get("argv", [])) else "forward"
    fig.suptitle(f"Gluon {kind} vs SDPA, bf16, {report.get('device')}, "
                 f"{report.get('started', '')[:10]}", fontsize=9)
    fig.tight_layout()
    png = os.path.splitext(path)[0] + ".png"
    fig.savefig(png, dpi=110)
    return png


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------


def run_child(args_list, timeout):
    """Run this script as a child; return (json records, stderr tail, timed_out)."""
    return harness.run_child(__file__, args_list, timeout)


def out_path(out):
    return harness.out_path(out, "gluon_check.json")


def _case_details(r):
    """A forward case's numbers for its line: O's and LSE's errors, NaNs, the empty rows."""
    line = ""
    if "err_o" in r:
        line += (f"  |O-ref| {r['err_o']:.2e} (tol {r['tol_o']:.2e}, torch {r['err_torch']:.2e})"
                 f"  |LSE-ref| {r['err_lse']:.2e}")
        if r.get("nan_o") or r.get("nan_lse"):
            line += f"  NaN O {r['nan_o']} LSE {r['nan_lse']}"
        if not r.get("empty_rows_ok", True):
            line += "  EMPTY-ROWS-WRONG"
        if "n_regs" in r:
            line += f"  [regs {r['n_regs']} spills {r['n_spills']} smem {r['shared']}]"
    return line


def main():
    ap = harness.parser(__doc__, variants=DEFAULT_VARIANTS,
                        names="simple overlap ws2 pp pp3 pp-persistent pp3-persistent pp-dynamic "
                              "pp3-dynamic",
                        cases="all", timeout=300, bench_timeout=240, jobs=5, dims="64,128,256",
                        case_sets=("quick", "all", "d256"))
    ap.add_argument("--plot-from", default=None, metavar="JSON",
                    help="draw a report's bench as a PNG beside it (TFLOP/s vs seqlen) and exit")
    args = ap.parse_args()

    if args.plot_from:
        print(f"wrote {plot_bench(args.plot_from)}")
        return
    if args.child_correct:
        child_correct(args.child_correct, args.cases)
        return
    if args.emulate:
        emulate_check()
        return
    points = harness.parse_points(args.points, BENCH_POINTS)
    if args.child_bench:
        child_bench(args.child_bench.split(","), args.rounds, points)
        return

    specs = [s for s in args.variants.split(",") if s.strip()]
    for s in specs:
        parse_variant(s)
    path = out_path(args.out)
    report = {"argv": sys.argv, "variants": specs, "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    if args.compile_only:
        harness.compile_report(report, compile_only(specs, [int(x) for x in args.dims.split(",")]),
                               path)
        return

    harness.check_and_bench(__file__, args, specs, len(case_list(args.cases)), points, report,
                            path, _case_details, load_kernel_module,
                            "TFLOP/s (bf16, B=16384/S, H=2048/D), x = ratio to cuDNN")


if __name__ == "__main__":
    main()
