#!/usr/bin/env python3
"""Check and time the Gluon FlashAttention backward (``_gluon_bwd.py``) on an H100.

    python3 backends/attnhub_triton/gluon_bwd_check.py --out $OUT/gbwd --cases quick --rounds 2 \\
        --timeout 90 --bench-timeout 120
    python3 backends/attnhub_triton/gluon_bwd_check.py --cases all --no-bench
    /tmp/tri36env/bin/python backends/attnhub_triton/gluon_bwd_check.py --compile-only   # no GPU/torch
    python3 backends/attnhub_triton/gluon_bwd_check.py --emulate                         # CPU, torch

Self-contained: the kernel module is loaded by file path, not through the attnhub package.

1. correctness -- one child process per variant (a barrier deadlock costs that child's
   --timeout, not the run).  Every case: fresh random q, k, v, dO; O and LSE from a float32
   forward on the same inputs (O rounded to q's dtype, LSE natural log, -inf for rows that
   see no key); dQ, dK, dV pre-filled with NaN; reference gradients from float32 autograd;
   tolerance per gradient: max|g - ref| <= 2 * max|torch SDPA's own gradient in q's dtype -
   ref| + 1e-5; no NaN anywhere; rows that see no key: dQ == 0 exactly.  One line per case,
   then ``correctness: N/M passed (T s)``.
2. bench (only if every case passed, unless --bench-anyway) -- in one child: FA grid points
   B = 16384 // S, H = 2048 // D, bf16; the Gluon backward (its pre-pass and dQ conversion
   included) and torch SDPA's backward with CUDNN_ATTENTION and FLASH_ATTENTION (forward run
   once, then torch.autograd.grad(..., retain_graph=True) timed), interleaved point by
   point, --rounds rounds, triton.testing.do_bench medians; TFLOP/s with backward FLOPs =
   2.5 * 4 B H S^2 D (halved when causal), and the ratio to cuDNN.
JSON (cases, bench) goes to --out (a .json path, or a directory that gets gluon_bwd_check.json).

Variant specs: a name of _gluon_bwd.VARIANTS with optional knobs, e.g. ``m64:stages=3``,
``m64:dq_vec=4`` (fp32 per dQ atomic: 1, 2 (default) or 4), ``m64:dq_tma=1`` (dQ by a TMA
bulk reduce), ``m64:s_ahead=1`` (the next block's Sᵀ issued before this block's dQ; 2: and
dPᵀ, d64 only), ``m64a:ahead_chunk=0`` (d128: before the first of the two dQ chunks).
A combination the launcher rejects (e.g. block_m=128 at d128) is reported as SKIP.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_FILE = os.path.join(HERE, "_gluon_bwd.py")
# m64v4 / m128v4: 4-wide dQ atomics, m64tma: dQ by TMA bulk reduce (thirty-sixth session),
# timed against m64 / m128; m64v1 (scalar atomics, a control) only when named; m64a / m64a2:
# the next block's Sᵀ (and dPᵀ, d64 only) issued before this block's dQ (S_AHEAD); m64co /
# m128ro (dQ shared by columns / rows every block), m64o1 / h64w (dQ as one product), h64r /
# h64rw (the d256 role split): the fortieth session's, timed against m64o / m64 / h64
DEFAULT_VARIANTS = ("m64,m64a,m64a2,m128,m64v4,m128v4,m64tma,m64o,m64ao,m64co,m64o1,m128ro,"
                    "h64,h64w,h64r,h64rw")
LOG2E = 1.4426950408889634


_harness_spec = importlib.util.spec_from_file_location(
    "attnhub_gluon_harness", os.path.join(HERE, "_gluon_harness.py"))
harness = importlib.util.module_from_spec(_harness_spec)
_harness_spec.loader.exec_module(harness)


def load_kernel_module():
    return harness.load_kernel(KERNEL_FILE)


def parse_variant(spec):
    """'m64:stages=3' -> ('m64', {'stages': 3})."""
    parts = spec.strip().split(":")
    name, knobs = parts[0], {}
    for p in parts[1:]:
        k, v = p.split("=")
        knobs[k] = int(v)
    if "variant" in knobs:
        raise ValueError(spec)
    return name, knobs


# --------------------------------------------------------------------------------------
# cases and references (shared by the GPU check and the emulation)
# --------------------------------------------------------------------------------------


def case_list(which):
    """(B, Hq, Hk, Sq, Sk, D, causal, dtype) tuples."""
    cases = []
    if which == "ahead":
        # S_AHEAD's failure narrowed down (GLUON_BWD_NOTES, "Fortieth session"): one head,
        # one 128-key CTA, n_iter = Sq / 64 = 1, 2, 3, 4 (the ring is 2 deep), then two
        # heads, two CTAs, causal and the quick case; the smallest first, so the first
        # failure is the simplest one (a later illegal access kills the child)
        for sq in (64, 128, 192, 256):
            cases.append((1, 1, 1, sq, 128, 64, False, "bf16"))
        cases.append((1, 2, 2, 128, 128, 64, False, "bf16"))
        cases.append((1, 1, 1, 128, 256, 64, False, "bf16"))
        cases.append((1, 1, 1, 256, 256, 64, True, "bf16"))
        cases.append((1, 1, 1, 256, 128, 128, False, "bf16"))
        cases.append((2, 4, 4, 1000, 1000, 64, False, "bf16"))
        return cases
    if which == "quick":
        for d in (64, 128):
            for causal in (False, True):
                cases.append((2, 4, 4, 1000, 1000, d, causal, "bf16"))
                cases.append((2, 4, 4, 113, 203, d, causal, "bf16"))
            cases.append((2, 8, 2, 1000, 1000, d, True, "bf16"))
        cases.append((2, 4, 4, 203, 113, 128, True, "fp16"))  # rows that see no key
        cases.append((1, 4, 4, 4096, 4096, 128, False, "fp16"))
        cases.append((2, 4, 4, 1, 4096, 64, True, "bf16"))
        # d256: only hsplit builds it (h64); the others report SKIP
        for causal in (False, True):
            cases.append((2, 4, 4, 1000, 1000, 256, causal, "bf16"))
            cases.append((2, 4, 4, 113, 203, 256, causal, "bf16"))
        cases.append((2, 8, 2, 1000, 1000, 256, True, "bf16"))
        cases.append((2, 4, 4, 203, 113, 256, True, "fp16"))
        cases.append((1, 2, 2, 4096, 4096, 256, False, "fp16"))
        return cases
    for d in (64, 128, 256):
        for causal in (False, True):
            for dt in ("bf16", "fp16"):
                for sq, sk in ((128, 128), (1000, 1000), (4096, 4096), (113, 203), (203, 113),
                               (1, 4096)):
                    cases.append((2 if sq * sk < 4096 * 4096 else 1, 4, 4, sq, sk, d, causal, dt))
                cases.append((2, 8, 2, 1000, 1000, d, causal, dt))  # GQA 8 / 2
                cases.append((2, 8, 2, 113, 203, d, causal, dt))
    return cases


def case_name(c):
    B, Hq, Hk, Sq, Sk, D, causal, dt = c
    return f"B{B} H{Hq}/{Hk} Sq{Sq} Sk{Sk} d{D} {'causal' if causal else 'full'} {dt}"


def allowed_mask(Sq, Sk, causal, device):
    i = __import__("torch").arange(Sq, device=device)[:, None]
    j = __import__("torch").arange(Sk, device=device)[None, :]
    if causal:
        return j <= i + (Sk - Sq)
    return (j >= 0) & (i >= 0)


def forward_ref(q, k, v, causal, scale, ref_dtype):
    """O (q's dtype) and LSE (float32, natural log, -inf where a row sees no key), computed in
    ref_dtype one batch at a time."""
    import torch
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    g = Hq // Hk
    allowed = allowed_mask(Sq, Sk, causal, q.device)
    o = torch.empty_like(q)
    lse = torch.empty(B, Hq, Sq, device=q.device, dtype=torch.float32)
    for b in range(B):
        kf = k[b].to(ref_dtype).repeat_interleave(g, dim=0)
        vf = v[b].to(ref_dtype).repeat_interleave(g, dim=0)
        s = torch.matmul(q[b].to(ref_dtype), kf.transpose(-1, -2)) * scale
        s = s.masked_fill(~allowed, float("-inf"))
        lse[b] = torch.logsumexp(s, dim=-1).float()
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        o[b] = torch.matmul(p, vf).to(q.dtype)
    return o, lse


def grads_ref(q, k, v, do, causal, scale, ref_dtype, lowprec=False):
    """(dq, dk, dv) by autograd.  ref_dtype=float32/float64: the reference; lowprec=True:
    torch SDPA in q's dtype with the same mask (torch's own low-precision error).  Rows that
    see no key get an all-True mask row and dO = 0 there, so they contribute nothing and
    produce no NaN; their dQ is 0."""
    import torch
    import torch.nn.functional as F
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    g = Hq // Hk
    allowed = allowed_mask(Sq, Sk, causal, q.device)
    sees = allowed.any(dim=-1)
    safe = allowed | ~sees[:, None]
    dom = do * sees[None, None, :, None].to(do.dtype)
    dt = q.dtype if lowprec else ref_dtype
    qq = q.detach().to(dt).requires_grad_(True)
    kk = k.detach().to(dt).requires_grad_(True)
    vv = v.detach().to(dt).requires_grad_(True)
    ke = kk.repeat_interleave(g, dim=1)
    ve = vv.repeat_interleave(g, dim=1)
    if lowprec:
        out = F.scaled_dot_product_attention(qq, ke, ve, attn_mask=safe, scale=scale)
    else:
        s = torch.matmul(qq, ke.transpose(-1, -2)) * scale
        s = s.masked_fill(~safe, float("-inf"))
        out = torch.matmul(torch.softmax(s, dim=-1), ve)
    dq, dk, dv = torch.autograd.grad(out, (qq, kk, vv), dom.to(dt))
    return dq.float(), dk.float(), dv.float(), sees


# --------------------------------------------------------------------------------------
# GPU correctness
# --------------------------------------------------------------------------------------


def bad_blocks(got, ref, tol, rows=64):
    """Where a gradient is wrong, for the failure's record: per (batch, head), the 64-row
    blocks whose largest error exceeds tol (NaN counts), as 'b.h:block(err)' strings."""
    err = (got - ref).abs().nan_to_num(float("inf"))
    B, H, S, _ = err.shape
    n = (S + rows - 1) // rows
    out = []
    for b in range(B):
        for h in range(H):
            for i in range(n):
                e = float(err[b, h, i * rows:(i + 1) * rows].max())
                if e > tol:
                    out.append(f"{b}.{h}:{i}({e:.2g})")
    return out[:24]


def run_case(mod, case, variant, knobs, seed):
    import torch
    B, Hq, Hk, Sq, Sk, D, causal, dt = case
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
    try:
        mod.resolve_config(D, variant=variant, **knobs)
    except ValueError as exc:
        return {"status": "SKIP", "why": str(exc)}
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, Hq, Sq, D, device="cuda", dtype=dtype, generator=gen)
    k = torch.randn(B, Hk, Sk, D, device="cuda", dtype=dtype, generator=gen)
    v = torch.randn(B, Hk, Sk, D, device="cuda", dtype=dtype, generator=gen)
    do = torch.randn(B, Hq, Sq, D, device="cuda", dtype=dtype, generator=gen)
    scale = 1.0 / math.sqrt(D)
    o, lse = forward_ref(q, k, v, causal, scale, torch.float32)
    dq = torch.full_like(q, float("nan"))
    dk = torch.full_like(k, float("nan"))
    dv = torch.full_like(v, float("nan"))
    mod.gluon_attention_bwd(q, k, v, o, do, lse, causal=causal, softmax_scale=scale, dq=dq,
                            dk=dk, dv=dv, variant=variant, **knobs)
    torch.cuda.synchronize()
    rq, rk, rv, sees = grads_ref(q, k, v, do, causal, scale, torch.float32)
    lq, lk, lv, _ = grads_ref(q, k, v, do, causal, scale, torch.float32, lowprec=True)
    rec = {}
    ok = True
    for name, got, ref, low in (("dq", dq, rq, lq), ("dk", dk, rk, lk), ("dv", dv, rv, lv)):
        gf = got.float()
        nan = int(torch.isnan(gf).sum())
        err = float((gf - ref).abs().nan_to_num(float("inf")).max())
        err_t = float((low - ref).abs().nan_to_num(0.0).max())
        tol = 2.0 * err_t + 1e-5
        rec[f"err_{name}"], rec[f"tol_{name}"], rec[f"nan_{name}"] = err, tol, nan
        ok &= nan == 0 and err <= tol
        if nan or err > tol:
            rec[f"bad_{name}"] = bad_blocks(gf, ref, tol)
    empty_ok = True
    if (~sees).any():
        empty_ok = bool((dq.float()[:, :, ~sees] == 0).all())
    rec["empty_rows_ok"] = empty_ok
    ok &= empty_ok
    k_obj = mod._LAST.get("kernel")
    if k_obj is not None:
        try:
            rec.update({"n_regs": int(k_obj.n_regs), "n_spills": int(k_obj.n_spills),
                        "shared": int(k_obj.metadata.shared)})
        except Exception:
            pass
    rec["status"] = "PASS" if ok else "FAIL"
    return rec


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
    for idx, case in enumerate(case_list(which)):
        rec = {"variant": spec, "case": case_name(case)}
        t0 = time.time()
        try:
            rec.update(run_case(mod, case, name, knobs, seed=4321 + idx))
        except Exception as exc:
            rec.update({"status": "FAIL", "error": f"{type(exc).__name__}: {exc}"[-2000:]})
        rec["seconds"] = round(time.time() - t0, 2)
        print(json.dumps(rec), flush=True)


# --------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------

BENCH_POINTS = [(S, D, causal) for D in (64, 128, 256) for S in (2048, 4096, 8192, 16384)
                for causal in (False, True)]


def _fwd_lse(q, k, v, causal):
    """O and natural-log LSE for the bench (flash's aten op; a rough stand-in if missing)."""
    import torch
    try:
        res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal)
        o, lse = res[0], res[1]
        if lse.shape == q.shape[:3] and lse.dtype == torch.float32:
            return o.contiguous(), lse.contiguous(), "flash"
    except Exception:
        pass
    o = torch.randn_like(q)
    lse = torch.full(q.shape[:3], math.log(q.shape[2]) + 2.0, device=q.device,
                     dtype=torch.float32)
    return o, lse, "stand-in"


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
        do = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        flops = 2.5 * 4.0 * B * H * S * S * D * (0.5 if causal else 1.0)
        fns = {}
        errors = {}
        o, lse, lse_src = _fwd_lse(q, k, v, causal)
        for spec, name, knobs in variants:
            try:
                mod.resolve_config(D, variant=name, **knobs)
            except ValueError:
                continue
            bufs = (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v))
            fns[spec] = (lambda name=name, knobs=knobs, bufs=bufs: mod.gluon_attention_bwd(
                q, k, v, o, do, lse, causal=causal, dq=bufs[0], dk=bufs[1], dv=bufs[2],
                variant=name, **knobs))
        for label, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                               ("flash", SDPBackend.FLASH_ATTENTION)):
            try:
                qq, kk, vv = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
                with sdpa_kernel(backend):
                    out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)

                def run(out=out, qq=qq, kk=kk, vv=vv):
                    return torch.autograd.grad(out, (qq, kk, vv), do, retain_graph=True)
                fns[label] = run
            except Exception as exc:
                errors[label] = f"{type(exc).__name__}: {str(exc)[-300:]}"
        times = {key: [] for key in fns}
        for _ in range(rounds):  # interleaved: every impl once per round, same inputs
            for key, fn in fns.items():
                if key in errors:
                    continue
                try:
                    fn()
                    torch.cuda.synchronize()
                    times[key].append(triton.testing.do_bench(fn, warmup=10, rep=40,
                                                              return_mode="median"))
                except Exception as exc:
                    errors[key] = f"{type(exc).__name__}: {str(exc)[-500:]}"
        res = {"S": S, "D": D, "causal": causal, "B": B, "H": H, "lse_from": lse_src, "ms": {},
               "tflops": {}, "x_cudnn": {}, "errors": errors}
        for key, ts in times.items():
            if ts:
                ms = sorted(ts)[len(ts) // 2]
                res["ms"][key] = ms
                res["tflops"][key] = flops / (ms * 1e-3) / 1e12
        c = res["tflops"].get("cudnn")
        for key, tf in res["tflops"].items():
            res["x_cudnn"][key] = tf / c if c else None
        print(json.dumps(res), flush=True)
        del q, k, v, do, o, lse, fns
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# compile-only (no GPU, no torch): regs / smem / spills / HGMMA per variant and build
# --------------------------------------------------------------------------------------


def wgmma_order(sass):
    """The consumers' products and dQ reduction in SASS order, one letter per run of like
    instructions: S = an SS wgmma without a transposed B (Sᵀ = K Qᵀ or dPᵀ = V dOᵀ),
    R = an RS wgmma (A from registers: dV += Pᵀ dO, dK += dSᵀ Q), Q = an SS wgmma with
    ``.tnspB`` (dQ = dS K), A = dQ atomics (REDG) or a bulk reduce (UTMAREDG), L = local
    memory (LDL / STL).  E.g. the default loop reads ``SRQA``; S_AHEAD's turn ``RSQA`` (d64)
    or ``RQASQA`` (d128: the next Sᵀ before the second chunk)."""
    import re
    out = []
    for ln in sass.splitlines():
        m = re.search(r"\b(HGMMA\.\S+|REDG\.\S+|UTMAREDG\S*|LDL\S*|STL\S*)\s+(.*)", ln)
        if not m:
            continue
        op, args = m.group(1), m.group(2)
        if op.startswith("HGMMA"):
            ops = [a.strip() for a in args.split(",")]
            c = "R" if len(ops) > 1 and re.match(r"R\d+$", ops[1]) else \
                ("Q" if ".tnspB" in args else "S")
        elif op.startswith(("LDL", "STL")):
            c = "L"
        else:
            c = "A"
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def dq_sass_facts(sass):
    """The dQ reduction in the SASS (for harness.compile_table): REDG counted by width
    (static instructions, both consumers), SHFL (the dq_vec=4 layout change), UTMAREDG
    (dq_tma=1); the wgmma order (``wgmma_order``) and ``S_before_dQ``, the number of places
    where an Sᵀ (dPᵀ) wgmma run is followed by dQ wgmmas with no dV/dK, atomics or local
    memory between (0 in the default loop; one per consumer with s_ahead, so 2);
    ``DEPBAR``, the warpgroup waits (one per HGMMA when ptxas serialised every wgmma,
    C7512)."""
    import re
    widths = {}
    for m in re.findall(r"REDG\.E\.ADD\.(F32(?:x[24])?)\b", sass):
        widths[m] = widths.get(m, 0) + 1
    order = wgmma_order(sass)
    facts = {"REDG_by_width": widths, "SHFL": len(re.findall(r"\bSHFL\.", sass)),
             "UTMAREDG": sass.count("UTMAREDG"), "wgmma_order": order,
             "S_before_dQ": order.count("SQ"), "DEPBAR": sass.count("WARPGROUP.DEPBAR")}
    serial = facts["DEPBAR"] >= sass.count("HGMMA") > 0
    text = (" ".join(f"REDG.{w} {n}" for w, n in sorted(widths.items())) or "no REDG") + \
        f" SHFL {facts['SHFL']} UTMAREDG {facts['UTMAREDG']} S_before_dQ " \
        f"{facts['S_before_dQ']} DEPBAR {facts['DEPBAR']}" + (" SERIALISED" if serial else "") + \
        f" order {order}"
    return facts, text


def compile_only(specs, dims, aligned=True):
    """The compile table; aligned=False leaves the pointers unspecialised (the first
    sessions' table: scalar dQ atomics), True models a launch's 16-byte-aligned tensors."""
    import functools
    import types
    mod = load_kernel_module()
    shim = types.SimpleNamespace(resolve_config=mod.resolve_config,
                                 compile_offline=functools.partial(mod.compile_offline,
                                                                   aligned=aligned))
    return harness.compile_table(shim, specs, dims, parse_variant, extra=dq_sass_facts)


# --------------------------------------------------------------------------------------
# CPU emulation of the kernel's block schedule
# --------------------------------------------------------------------------------------


def ahead_rows(qbh0, m_first, n_mb, group, s_ahead, control=None):
    """The rows the S_AHEAD loop's registers hold when it uses them, traced as the kernel
    (``_consumer_loop_ahead``) updates them: per iteration, the block (query head row, query
    block) whose Q / dO / dQ it works on, the log2-LSE row and the block index of the mask
    that started its Sᵀ (computed one iteration earlier, or in the prologue), and the Δ row
    that started its dPᵀ (s_ahead=1: in the same iteration; 2: one earlier).  Rows are
    (head row, query block).  control="stale": the next block's Sᵀ started with this
    block's LSE row (a deliberate bug for the negative control)."""
    last = qbh0 + group - 1

    def nxt(mb, bhq):  # _next_block
        mb += 1
        wrap = int(mb == n_mb)
        return (m_first if wrap else mb), bhq + wrap

    n_iter = group * (n_mb - m_first)
    mb, bhq = m_first, qbh0
    lse_c = delta_c = (qbh0, m_first)  # _consumer's loads before the loop
    s_from = (lse_c, mb)  # the prologue's Sᵀ
    dp_from = delta_c
    nmb, nbhq = nxt(mb, bhq)
    lse_c = (min(nbhq, last), nmb)
    if s_ahead == 2:
        delta_c = (min(nbhq, last), nmb)
    rows = []
    for _ in range(n_iter):
        blk = (bhq, mb)
        mb, bhq = nxt(mb, bhq)  # block it + 1
        if s_ahead == 1:
            dp_from = delta_c
            delta_c = (min(bhq, last), mb)
        rows.append(dict(block=blk, lse=s_from[0], mask_mb=s_from[1], delta=dp_from))
        s_from = ((blk if control == "stale" else lse_c), mb)  # block it + 1's Sᵀ
        if s_ahead == 2:
            dp_from = delta_c
        nmb, nbhq = nxt(mb, bhq)
        lse_c = (min(nbhq, last), nmb)
        if s_ahead == 2:
            delta_c = (min(nbhq, last), nmb)
    return rows


def emulate(q, k, v, o, do, lse, causal, scale, block_m=64, control=None, s_ahead=0,
            hsplit=0):
    """The kernel's arithmetic, block by block, in float32 on the CPU.

    Same as _gluon_bwd.py: the pre-pass (Δ = rowsum(dO∘O), log2-LSE with +inf for -inf and
    for padding rows, Δ = 0 on padding, rows padded to n_mb * block_m); CTAs of 128 keys per
    (b, KV head), two 64-key warpgroups; the query blocks m_first.. for every head of the
    group; TMA zero fill of Q/dO/K/V rows out of range; Sᵀ's accumulator starting at
    -log2-LSE / (scale log2e) with -inf where the causal / Sk mask drops a key (edge blocks
    only, the kernel's `need`); P = exp2(acc · scale log2e); dPᵀ's accumulator starting at -Δ;
    P and dS rounded to q's dtype before dV += PᵀdO, dK += dSᵀQ and dQ = dS_0 K_0 + dS_1 K_1
    (both halves); dQ summed across key blocks in float32, times scale, rounded; dK · scale
    and dV rounded per CTA, rows < Sk.  control: a deliberate bug for the negative control
    ("no_mask": the causal / Sk mask dropped; "ln_lse": LSE not scaled by log2e; "stale":
    with s_ahead, the next block's Sᵀ started with this block's LSE).  s_ahead=1, 2: the
    S_AHEAD loop's row bookkeeping (``ahead_rows``) picks the LSE / mask / Δ rows that start
    each product, instead of the block's own.  hsplit=1: the HSPLIT build's CTAs of 64 keys
    (one key block, dQ = dS K), its mask decided per query half (``need`` of each warpgroup's
    columns); the split of dK / dV / dQ by head-dim columns changes no sum.  hsplit=2 (the
    role split): 64-key CTAs, the mask decided for the whole query block, and dS formed from
    P already rounded to q's dtype (warpgroup 1 reads warpgroup 0's stored P)."""
    import torch
    f32 = torch.float32
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    group = Hq // Hk
    dtype = q.dtype
    c = torch.tensor(scale * LOG2E, dtype=f32)
    inv_c = torch.tensor(1.0, dtype=f32) / c
    n_mb = (Sq + block_m - 1) // block_m
    sq_pad = n_mb * block_m
    # ---- pre-pass ----
    delta = torch.zeros(B * Hq, sq_pad)
    lse2 = torch.full((B * Hq, sq_pad), float("inf"))
    delta[:, :Sq] = (do.float() * o.float()).sum(-1).reshape(B * Hq, Sq)
    l2 = lse.reshape(B * Hq, Sq) * (1.0 if control == "ln_lse" else LOG2E)
    lse2[:, :Sq] = torch.where(torch.isneginf(l2), torch.tensor(float("inf")), l2)
    qp = torch.zeros(B * Hq, sq_pad, D)
    dop = torch.zeros(B * Hq, sq_pad, D)
    qp[:, :Sq] = q.float().reshape(B * Hq, Sq, D)
    dop[:, :Sq] = do.float().reshape(B * Hq, Sq, D)
    halves = (0, ) if hsplit else (0, 1)  # 64-key warpgroup blocks per CTA
    nk = 64 * len(halves)
    n_kb = (Sk + nk - 1) // nk
    kp = torch.zeros(B * Hk, n_kb * nk, D)
    vp = torch.zeros(B * Hk, n_kb * nk, D)
    kp[:, :Sk] = k.float().reshape(B * Hk, Sk, D)
    vp[:, :Sk] = v.float().reshape(B * Hk, Sk, D)
    dq_acc = torch.zeros(B * Hq, sq_pad, D)
    dk = torch.full((B * Hk, Sk, D), float("nan"))
    dv = torch.full((B * Hk, Sk, D), float("nan"))
    offset = Sk - Sq
    cols = torch.arange(block_m)
    for kv_bh in range(B * Hk):
        b, hk = divmod(kv_bh, Hk)
        qbh0 = b * Hq + hk * group
        for kb in range(n_kb):
            n0 = kb * nk
            m_first = max(n0 - offset, 0) // block_m if causal else 0
            nm = n_mb - m_first
            k_w = [kp[kv_bh, n0 + 64 * w:n0 + 64 * w + 64] for w in halves]
            v_w = [vp[kv_bh, n0 + 64 * w:n0 + 64 * w + 64] for w in halves]
            dk_w = [torch.zeros(64, D) for _ in halves]
            dv_w = [torch.zeros(64, D) for _ in halves]
            rows = ahead_rows(qbh0, m_first, n_mb, group, s_ahead, control) if s_ahead else None
            for it in range(group * nm):
                g, mb = it // nm, m_first + it % nm
                m0 = mb * block_m
                bhq = qbh0 + g
                lse_bhq, lse_m0, mask_m0, d_bhq, d_m0 = bhq, m0, m0, bhq, m0
                if rows:
                    row = rows[it]
                    assert row["block"] == (bhq, mb), (row, bhq, mb)
                    (lse_bhq, lse_mb), mask_mb, (d_bhq, d_mb) = (row["lse"], row["mask_mb"],
                                                                 row["delta"])
                    lse_m0, mask_m0, d_m0 = lse_mb * block_m, mask_mb * block_m, d_mb * block_m
                qt = qp[bhq, m0:m0 + block_m]
                dot = dop[bhq, m0:m0 + block_m]
                ds_half = []
                for w in halves:
                    keys = n0 + 64 * w + torch.arange(64)
                    s_init = (-(lse2[lse_bhq, lse_m0:lse_m0 + block_m] * inv_c))[None, :].expand(
                        64, block_m)
                    # the mask's column groups: the whole block, or (hsplit) each
                    # warpgroup's half of the query columns, with its own `need`
                    for c0 in ((0, block_m // 2) if hsplit == 1 else (0, )):
                        cw = block_m // 2 if hsplit == 1 else block_m
                        need = n0 + nk > Sk or (causal and n0 + nk - 1 > mask_m0 + c0 + offset)
                        if need and control != "no_mask":
                            keep = (keys < Sk)[:, None].expand(64, cw)
                            if causal:
                                keep = keep & (keys[:, None]
                                               <= (mask_m0 + offset + cols[c0:c0 + cw])[None, :])
                            s_init = s_init.clone()
                            s_init[:, c0:c0 + cw] = torch.where(keep, s_init[:, c0:c0 + cw],
                                                                torch.tensor(float("-inf")))
                    s = s_init + k_w[w] @ qt.T
                    p = torch.exp2(s * c)
                    dp = -delta[d_bhq, d_m0:d_m0 + block_m][None, :] + v_w[w] @ dot.T
                    p16 = p.to(dtype).float()
                    ds = (p16 if hsplit == 2 else p) * dp
                    ds16 = ds.to(dtype).float()
                    dv_w[w] += p16 @ dot
                    dk_w[w] += ds16 @ qt
                    ds_half.append(ds16)
                dq_acc[bhq, m0:m0 + block_m] += sum(ds_half[w].T @ k_w[w] for w in halves)
            for w in halves:
                lo, hi = n0 + 64 * w, min(n0 + 64 * w + 64, Sk)
                if hi > lo:
                    dk[kv_bh, lo:hi] = (dk_w[w][:hi - lo] * scale).to(dtype).float()
                    dv[kv_bh, lo:hi] = dv_w[w][:hi - lo].to(dtype).float()
    dq = (dq_acc[:, :Sq] * scale).to(dtype).float().reshape(B, Hq, Sq, D)
    return dq, dk.reshape(B, Hk, Sk, D), dv.reshape(B, Hk, Sk, D)


def emulate_check():
    import torch
    torch.manual_seed(0)
    cases = [  # (B, Hq, Hk, Sq, Sk, D, causal, dtype, block_m)
        (1, 2, 2, 113, 203, 64, False, "bf16", 64),
        (1, 2, 2, 113, 203, 64, True, "bf16", 64),
        (1, 2, 2, 203, 113, 64, True, "fp16", 64),   # causal, rows that see no key
        (1, 2, 2, 203, 113, 64, True, "bf16", 128),
        (1, 2, 2, 1, 300, 64, True, "bf16", 64),
        (1, 2, 2, 257, 257, 64, False, "bf16", 128),
        (1, 8, 2, 150, 150, 64, True, "bf16", 64),   # GQA 8 / 2
        (1, 2, 1, 130, 390, 128, True, "bf16", 64),  # d128 causal, MQA
        (1, 2, 2, 200, 200, 128, False, "fp16", 64),
    ]
    n_ok = 0
    for case in cases:
        ok, text = _emulate_errors(case)
        n_ok += ok
        print(f"{'PASS' if ok else 'FAIL'} emulate {case_name(case[:8])} m{case[8]}: {text}")
    # negative controls: deliberate bugs must fail
    n_neg = 0
    for control, case in (("no_mask", (1, 2, 2, 113, 203, 64, True, "bf16", 64)),
                          ("ln_lse", (1, 2, 2, 200, 200, 64, False, "bf16", 64))):
        bad = not _emulate_errors(case, control=control)[0]
        n_neg += bad
        print(f"{'PASS' if bad else 'FAIL'} negative control '{control}' "
              f"({case_name(case[:8])}): {'detected' if bad else 'NOT detected'}")
    print(f"emulation: {n_ok}/{len(cases)} cases passed, {n_neg}/2 negative controls failed "
          f"as they must")
    ahead_ok = emulate_ahead_check()
    return n_ok == len(cases) and n_neg == 2 and ahead_ok


def _emulate_errors(case, control=None, s_ahead=0, hsplit=0):
    """(passed, text) of one emulated case against fp64 autograd (2x torch's own error)."""
    import torch
    B, Hq, Hk, Sq, Sk, D, causal, dt, bm = case
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
    q = torch.randn(B, Hq, Sq, D).to(dtype)
    k = torch.randn(B, Hk, Sk, D).to(dtype)
    v = torch.randn(B, Hk, Sk, D).to(dtype)
    do = torch.randn(B, Hq, Sq, D).to(dtype)
    scale = D ** -0.5
    o, lse = forward_ref(q, k, v, causal, scale, torch.float64)
    rq, rk, rv, sees = grads_ref(q, k, v, do, causal, scale, torch.float64)
    lq, lk, lv, _ = grads_ref(q, k, v, do, causal, scale, torch.float64, lowprec=True)
    gq, gk, gv = emulate(q, k, v, o, do, lse, causal, scale, block_m=bm, control=control,
                         s_ahead=s_ahead, hsplit=hsplit)
    ok, parts = True, []
    for name, got, ref, low in (("dq", gq, rq, lq), ("dk", gk, rk, lk), ("dv", gv, rv, lv)):
        err = float((got - ref).abs().nan_to_num(float("inf")).max())
        tol = 2.0 * float((low - ref).abs().nan_to_num(0.0).max()) + 1e-5
        nan = int(torch.isnan(got).sum())
        ok &= nan == 0 and err <= tol
        parts.append(f"{name} {err:.2e}/{tol:.2e}" + (f" NaN {nan}" if nan else ""))
    empty_ok = bool((gq[:, :, ~sees] == 0).all()) if (~sees).any() else True
    return ok and empty_ok, f"|err|/tol {', '.join(parts)}; empty rows dQ == 0: {empty_ok}"


def emulate_ahead_check():
    """S_AHEAD (s_ahead=1, 2): the same arithmetic with every product's start value taken
    from the rows the rotated loop's registers hold (``ahead_rows``): causal m_first, GQA
    head wrap, rows that see no key, one block per CTA, d128 MQA; plus a negative control
    (the next block's Sᵀ started with this block's LSE) that must fail."""
    import torch
    torch.manual_seed(1)
    cases = [  # ((B, Hq, Hk, Sq, Sk, D, causal, dtype, block_m), s_ahead)
        ((1, 2, 2, 113, 203, 64, True, "bf16", 64), 1),
        ((1, 2, 2, 200, 200, 64, False, "bf16", 64), 1),
        ((1, 8, 2, 150, 150, 64, True, "bf16", 64), 1),    # GQA 8 / 2: the head wrap
        ((1, 8, 2, 150, 150, 64, True, "bf16", 64), 2),
        ((1, 2, 2, 203, 113, 64, True, "fp16", 64), 2),    # rows that see no key
        ((1, 2, 2, 1, 300, 64, True, "bf16", 64), 1),      # one block per CTA
        ((1, 2, 1, 130, 390, 128, True, "bf16", 64), 1),   # d128 causal, MQA
        ((1, 2, 2, 200, 200, 128, False, "fp16", 64), 1),
    ]
    n_ok = 0
    for case, ahead in cases:
        ok, text = _emulate_errors(case, s_ahead=ahead)
        n_ok += ok
        print(f"{'PASS' if ok else 'FAIL'} emulate s_ahead={ahead} {case_name(case[:8])} "
              f"m{case[8]}: {text}")
    neg = (1, 4, 2, 200, 200, 64, False, "bf16", 64)
    bad = not _emulate_errors(neg, control="stale", s_ahead=1)[0]
    print(f"{'PASS' if bad else 'FAIL'} negative control 'stale' s_ahead=1 "
          f"({case_name(neg[:8])}): {'detected' if bad else 'NOT detected'}")
    print(f"emulation, S_AHEAD: {n_ok}/{len(cases)} cases passed, {int(bad)}/1 negative "
          f"control failed as it must")
    return n_ok == len(cases) and bad


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------


def run_child(args_list, timeout):
    """Run this script as a child; return (json records, stderr tail, timed_out)."""
    return harness.run_child(__file__, args_list, timeout)


def out_path(out):
    return harness.out_path(out, "gluon_bwd_check.json")


def _case_details(r):
    """A backward case's numbers for its line: dQ/dK/dV errors and tolerances, NaNs, dQ of
    the rows that see no key."""
    line = ""
    if "err_dq" in r:
        line += "  " + "  ".join(
            f"{g} {r['err_' + g]:.2e} (tol {r['tol_' + g]:.2e})" for g in ("dq", "dk", "dv"))
        for g in ("dq", "dk", "dv"):
            if r.get("bad_" + g):
                line += f"  bad {g} blocks " + " ".join(r["bad_" + g])
        nans = [g for g in ("dq", "dk", "dv") if r.get("nan_" + g)]
        if nans:
            line += "  NaN in " + ",".join(nans)
        if not r.get("empty_rows_ok", True):
            line += "  EMPTY-ROWS-DQ-NONZERO"
        if "n_regs" in r:
            line += f"  [regs {r['n_regs']} spills {r['n_spills']} smem {r['shared']}]"
        line += f"  {r.get('seconds', 0):.1f}s"
    return line


def main():
    ap = harness.parser(__doc__, variants=DEFAULT_VARIANTS,
                        names="m64 m64s3 m128 m64v4 m128v4 m64v1 m64tma m64a m64a2 m64o m64ao "
                              "m64c m64co m64o1 m128r m128ro h64 h64w h64r h64rw",
                        cases="quick", case_sets=("quick", "all", "ahead"),
                        timeout=90, bench_timeout=240, jobs=3, dims="64,128,256")
    ap.add_argument("--unaligned", action="store_true",
                    help="--compile-only without the launch's 16-byte pointer specialisation")
    args = ap.parse_args()

    if args.child_correct:
        child_correct(args.child_correct, args.cases)
        return
    if args.emulate:
        sys.exit(0 if emulate_check() else 1)
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
        rows = compile_only(specs, [int(x) for x in args.dims.split(",")],
                            aligned=not args.unaligned)
        harness.compile_report(report, rows, path)
        return

    harness.check_and_bench(__file__, args, specs, len(case_list(args.cases)), points, report,
                            path, _case_details, load_kernel_module,
                            "backward TFLOP/s (bf16, B=16384/S, H=2048/D, 2.5x fwd FLOPs), "
                            "x = ratio to cuDNN")


if __name__ == "__main__":
    main()
