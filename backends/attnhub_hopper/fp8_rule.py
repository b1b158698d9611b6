"""The accuracy rule for FP8 attention, shared by the tests and ``device_check.py``.

The flash-attn rule compares a backend with torch "in the same precision".  For FP8 the
same-precision computation is FlashAttention-3's: scores from the dequantised e4m3
inputs, P rounded to e4m3 for the PV product.  :func:`fp8_emulated` computes exactly that
in float64, and :func:`check_fp8` allows twice its error against the float64 reference on
the dequantised inputs, plus 1e-2 (O is bf16).

LSE is the score scale itself (with one key it *is* a score), and FP8 tensor cores do not
accumulate in full fp32: on the H100 here torch's own FP8 GEMM (``torch._scaled_mm``) is
off by 1.7e-3 (d128) to 3.0e-3 (d256, fast accumulation) in ``scale * q.k`` against fp64
(``cuda_check.py --fp8``, "score error").  So on a GPU with FP8 GEMMs the LSE bound is
twice the LSE error of scores from ``torch._scaled_mm`` (fast accumulation, the tensor
cores' own), and never below 1e-3; elsewhere 1e-3.
"""

import torch

from attnhub import reference


def fp8_emulated(q8, k8, v8, p, round_p: bool = True):
    """O of FP8 attention as the kernel computes it (P rounded to e4m3 after a 2^8 shift),
    in float64 from the dequantised inputs: the same-precision baseline for FP8."""
    qd, kd, vd = (t.double() for t in reference._dequantize(q8, k8, v8, p))
    g = p.heads_q // p.heads_kv
    kd, vd = kd.repeat_interleave(g, 1), vd.repeat_interleave(g, 1)
    s = (qd @ kd.transpose(-1, -2)) * p.scale
    mask = reference.allowed_mask(p.seqlen_q, p.seqlen_k, p.causal, p.window, s.device)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    m = s.amax(-1, keepdim=True).nan_to_num(neginf=0.0)
    pp = torch.exp2((s - m) * 1.4426950408889634 + 8.0)
    if round_p:
        o = (pp.to(torch.float8_e4m3fn).double() @ vd) / pp.sum(-1, keepdim=True)
    else:
        o = (pp @ vd) / pp.sum(-1, keepdim=True)
    return o.nan_to_num(0.0)


def torch_fp8_lse(q8, k8, p):
    """LSE from torch's own FP8 scores: ``torch._scaled_mm`` per (batch, head) with fast
    accumulation, then descales, scale, mask and logsumexp in float64.  None where torch
    has no FP8 GEMM for these tensors (CPU, pre-sm89 GPUs, head dims not a multiple of 16)."""
    if q8.device.type != "cuda" or not hasattr(torch, "_scaled_mm") or p.head_dim % 16:
        return None
    g = p.heads_q // p.heads_kv
    one = torch.ones((), device=q8.device)

    def pad(t):  # rows up to a multiple of 16, row-major (what _scaled_mm takes)
        rows = torch.nn.functional.pad(t.view(torch.uint8), (0, 0, 0, -t.shape[0] % 16))
        return rows.view(t.dtype).contiguous()

    mask = reference.allowed_mask(p.seqlen_q, p.seqlen_k, p.causal, p.window, q8.device)
    out = torch.empty(p.batch, p.heads_q, p.seqlen_q, dtype=torch.float64, device=q8.device)
    try:
        for b in range(p.batch):
            for h in range(p.heads_q):
                s = torch._scaled_mm(pad(q8[b, h]), pad(k8[b, h // g]).T, one, one,
                                     out_dtype=torch.float32, use_fast_accum=True)
                s = s[:p.seqlen_q, :p.seqlen_k].double() * p.scale
                for ds in (p.q_descale, p.k_descale):
                    if ds is not None:
                        s = s * ds.expand(p.batch, p.heads_kv)[b, h // g].double()
                if mask is not None:
                    s = s.masked_fill(~mask, float("-inf"))
                out[b, h] = torch.logsumexp(s, -1)
    except RuntimeError:  # no FP8 GEMM on this GPU / build
        return None
    return out


def check_fp8(backend, q8, k8, v8, p, round_p: bool = True):
    """FP8 rule: max|O - ref| <= 2 * max|emulated - ref| + 1e-2 (ref: fp64 on the
    dequantised inputs, emulated: P in e4m3 as FA3 does); max|LSE - ref| <= max(1e-3,
    2 * that of :func:`torch_fp8_lse`)."""
    o, lse = backend.forward(q8, k8, v8, p)
    ro, rl = reference.forward(q8, k8, v8, p, compute_dtype=torch.float64)
    base = fp8_emulated(q8, k8, v8, p, round_p=round_p)
    err = (o.double() - ro.double()).abs().max().item()
    berr = (base - ro.double()).abs().max().item()
    lerr = (lse.double() - rl.double()).nan_to_num(0.0).abs().max().item()
    tl = torch_fp8_lse(q8, k8, p)
    lbase = None if tl is None else (tl - rl.double()).nan_to_num(0.0).abs().max().item()
    finite = bool(torch.isfinite(o).all())
    ok = finite and err <= 2 * berr + 1e-2 and lerr <= max(1e-3, 2 * (lbase or 0.0))
    return ok, dict(o_err=err, baseline_err=berr, lse_err=lerr, lse_baseline_err=lbase,
                    finite=finite)
