"""Argument checking: every bad input becomes a clear error before any kernel runs."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .contract import FP8_DTYPES, Problem, default_scale, normalize_window

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64) + FP8_DTYPES
_LAYOUTS = ("bhsd", "bshd")


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {_name(t.dtype)}; expected a floating-point tensor "
            "(float16, bfloat16, float32, float64, or float8_e4m3fn with descales). "
            f"Try {name}.to(torch.bfloat16)")


def _check_common(q, k, v, scale, softcap, window):
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, t)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got q={_name(q.dtype)}, "
                        f"k={_name(k.dtype)}, v={_name(v.dtype)}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got q={q.device}, k={k.device}, "
                         f"v={v.device}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise TypeError(f"scale={scale!r}: expected None (1/sqrt(head_dim)) or a finite float")
    if softcap is not None:
        if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) \
                or not math.isfinite(softcap) or softcap < 0:
            raise ValueError(f"softcap={softcap!r}: expected None or a float > 0 "
                             "(scores become softcap * tanh(score / softcap))")
        if softcap == 0:  # flash-attn's convention: 0 means off
            softcap = None
    return normalize_window(window), (None if softcap is None else float(softcap))


def _check_descales(q, q_descale, k_descale, v_descale, batch, heads_kv):
    fp8 = q.dtype in FP8_DTYPES
    given = [(n, d) for n, d in (("q_descale", q_descale), ("k_descale", k_descale),
                                 ("v_descale", v_descale)) if d is not None]
    if not fp8:
        if given:
            raise ValueError(f"{given[0][0]} is only meaningful for float8 inputs; "
                             f"q is {_name(q.dtype)}")
        return
    for name, d in given:
        if not isinstance(d, torch.Tensor) or d.dtype != torch.float32:
            raise TypeError(f"{name} must be a float32 tensor of shape ({batch}, {heads_kv})")
        if tuple(d.shape) != (batch, heads_kv):
            raise ValueError(f"{name} has shape {tuple(d.shape)}, expected (batch, heads_kv) = "
                             f"({batch}, {heads_kv})")
        if d.device != q.device:
            raise ValueError(f"{name} is on {d.device}, expected {q.device} like q")


def make_problem(q, k, v, *, causal: bool = False, scale: Optional[float] = None, window=None,
                 softcap: Optional[float] = None, layout: str = "bhsd",
                 q_descale=None, k_descale=None, v_descale=None):
    """Validate dense inputs; return ``(problem, q, k, v)`` with q/k/v as BHSD views."""
    window, softcap = _check_common(q, k, v, scale, softcap, window)
    if layout not in _LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {_LAYOUTS} "
                         "('bhsd': (B, H, S, D); 'bshd': (B, S, H, D) as flash-attn)")
    dims = "(B, S, H, D)" if layout == "bshd" else "(B, H, S, D)"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D {dims} for layout={layout!r}, got shape "
                             f"{tuple(t.shape)}; for packed variable-length batches use "
                             "attnhub.attention_varlen")
    if layout == "bshd":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    B, Hq, Sq, D = q.shape
    _, Hk, Sk, _ = k.shape
    _check_shapes(q, k, v, dims)
    _check_descales(q, q_descale, k_descale, v_descale, B, Hk)
    problem = Problem(
        batch=B, heads_q=Hq, heads_kv=Hk, seqlen_q=Sq, seqlen_k=Sk, head_dim=D,
        head_dim_v=v.shape[3], dtype=q.dtype, device=q.device, causal=bool(causal),
        scale=float(default_scale(D) if scale is None else scale), window=window,
        softcap=softcap, requires_grad=_needs_grad(q, k, v),
        q_descale=q_descale, k_descale=k_descale, v_descale=v_descale)
    return problem, q, k, v


def _check_shapes(q, k, v, dims, varlen=False):
    # Dense tensors here are BHSD; varlen ones (total, H, D).
    if varlen:
        (_, Hq, D), (tk, Hk, Dk), (tv, Hv, Dv) = q.shape, k.shape, v.shape
        if tk != tv:
            raise ValueError(f"k and v must have the same total_k, got k {tuple(k.shape)} "
                             f"and v {tuple(v.shape)}")
    else:
        (B, Hq, _, D), (Bk, Hk, Sk, Dk), (Bv, Hv, Skv, Dv) = q.shape, k.shape, v.shape
        if not (B == Bk == Bv):
            raise ValueError(f"batch sizes differ: q {B}, k {Bk}, v {Bv} (shapes {dims})")
        if Sk != Skv:
            raise ValueError(f"k and v must have the same sequence length, got {Sk} and {Skv}")
    if Hk != Hv:
        raise ValueError(f"k and v must have the same number of heads, got {Hk} and {Hv}")
    if D != Dk:
        raise ValueError(f"q and k must have the same head_dim, got {D} and {Dk}")
    if D == 0 or Dv == 0:
        raise ValueError(f"head_dim must be >= 1, got q/k {D}, v {Dv}")
    if Hk == 0 or Hq % Hk:
        raise ValueError(f"heads_q={Hq} must be a multiple of heads_kv={Hk} (GQA/MQA); "
                         "repeat or regroup heads so that it is")


def _needs_grad(q, k, v) -> bool:
    return torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)


def tensor_memo(t: torch.Tensor, what: str, compute):
    """``compute()``, remembered on ``t`` until ``t`` is modified in place (its version
    counter moves).  Reading offsets costs a host sync; a model passes the same offsets to
    every layer, so this reads them once per forward.  No memo for tensors without a version
    counter (inference mode) or under tracing."""
    if torch.compiler.is_compiling():
        return compute()
    try:
        version = t._version
    except RuntimeError:  # inference tensors track no version
        return compute()
    memo = getattr(t, "_attnhub_memo", None)
    if memo is None:
        memo = {}
        t._attnhub_memo = memo
    hit = memo.get(what)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = compute()
    memo[what] = (version, value)
    return value


def _check_cu(name: str, cu, device, total: int, batch: Optional[int]) -> list[int]:
    if not isinstance(cu, torch.Tensor):
        raise TypeError(f"{name} must be an int32 torch.Tensor of sequence offsets, "
                        f"got {type(cu).__name__}")
    if cu.dtype != torch.int32:
        raise TypeError(f"{name} must be int32 (as flash-attn), got {_name(cu.dtype)}; "
                        f"try {name}.to(torch.int32)")
    if cu.dim() != 1 or cu.numel() < 1:
        raise ValueError(f"{name} must be 1-D (batch + 1,), got shape {tuple(cu.shape)}")
    if cu.device != device:
        raise ValueError(f"{name} is on {cu.device}, expected {device} like q")
    offs = tensor_memo(cu, "offsets", cu.tolist)
    if offs[0] != 0:
        raise ValueError(f"{name} must start at 0, got {offs[0]}")
    if any(b < a for a, b in zip(offs, offs[1:])):
        raise ValueError(f"{name} must be non-decreasing, got {offs}")
    if offs[-1] > total:
        raise ValueError(f"{name} ends at {offs[-1]}, past the tensor's end ({total} tokens)")
    if batch is not None and len(offs) != batch:
        raise ValueError(f"{name} has {len(offs)} entries, cu_seqlens_q has {batch}: "
                         "both must be (batch + 1,)")
    return offs


def make_varlen_problem(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *,
                        causal=False, scale=None, window=None, softcap=None,
                        q_descale=None, k_descale=None, v_descale=None) -> Problem:
    """Validate packed inputs ``q (total_q, Hq, D)``, ``k/v (total_k, Hk, D|Dv)``."""
    window, softcap = _check_common(q, k, v, scale, softcap, window)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise ValueError(f"{name} must be 3-D (total, H, D) for attention_varlen, got shape "
                             f"{tuple(t.shape)}")
    _check_shapes(q, k, v, "(total, H, D)", varlen=True)
    oq = _check_cu("cu_seqlens_q", cu_seqlens_q, q.device, q.shape[0], None)
    ok = _check_cu("cu_seqlens_k", cu_seqlens_k, q.device, k.shape[0], len(oq))
    lq = [b - a for a, b in zip(oq, oq[1:])]
    lk = [b - a for a, b in zip(ok, ok[1:])]
    for name, m, lens in (("max_seqlen_q", max_seqlen_q, lq), ("max_seqlen_k", max_seqlen_k, lk)):
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise TypeError(f"{name} must be a non-negative int, got {m!r}")
        if lens and m < max(lens):
            raise ValueError(f"{name}={m} is smaller than the longest sequence ({max(lens)})")
    B = len(oq) - 1
    _check_descales(q, q_descale, k_descale, v_descale, B, k.shape[1])
    return Problem(
        batch=B, heads_q=q.shape[1], heads_kv=k.shape[1], seqlen_q=q.shape[0],
        seqlen_k=k.shape[0], head_dim=q.shape[2], head_dim_v=v.shape[2], dtype=q.dtype,
        device=q.device, causal=bool(causal),
        scale=float(default_scale(q.shape[2]) if scale is None else scale), window=window,
        softcap=softcap, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
        max_seqlen_q=int(max_seqlen_q), max_seqlen_k=int(max_seqlen_k),
        requires_grad=_needs_grad(q, k, v),
        q_descale=q_descale, k_descale=k_descale, v_descale=v_descale)
