"""The accuracy rule for FP8 attention, shared by the tests and ``device_check.py``.

The flash-attn rule compares a backend with torch "in the same precision".  For FP8 the
same-precision computation is FlashAttention-3's: scores from the dequantised e4m3
inputs, P rounded to e4m3 for the PV product.  :func:`fp8_emulated` computes exactly that
in float64, and :func:`check_fp8` allows twice its error against the float64 reference on
the dequantised inputs, plus 1e-2 (O is bf16).
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


def check_fp8(backend, q8, k8, v8, p, round_p: bool = True):
    """FP8 rule: max|O - ref| <= 2 * max|emulated - ref| + 1e-2 (ref: fp64 on the
    dequantised inputs, emulated: P in e4m3 as FA3 does), LSE by the usual rule."""
    o, lse = backend.forward(q8, k8, v8, p)
    ro, rl = reference.forward(q8, k8, v8, p, compute_dtype=torch.float64)
    base = fp8_emulated(q8, k8, v8, p, round_p=round_p)
    err = (o.double() - ro.double()).abs().max().item()
    berr = (base - ro.double()).abs().max().item()
    lerr = (lse.double() - rl.double()).nan_to_num(0.0).abs().max().item()
    finite = bool(torch.isfinite(o).all())
    ok = finite and err <= 2 * berr + 1e-2 and lerr <= 1e-3
    return ok, dict(o_err=err, baseline_err=berr, lse_err=lerr, finite=finite)
