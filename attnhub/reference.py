"""The one reference implementation of attnhub's semantics.

Every backend is tested against these functions, and the ``naive`` backend and the core's
recomputing backward are built on them.  They process queries in blocks, so peak memory is
O(block × Sk) rather than O(Sq × Sk).

Mask, for query row ``i`` and key column ``j`` of one sequence (``Sq`` queries, ``Sk`` keys),
with ``off = Sk - Sq`` (bottom-right alignment, as flash-attn >= 2.1)::

    causal:          j <= i + off
    window (l, r):   i + off - l <= j <= i + off + r        (-1: that side unbounded)

    causal, Sq=2, Sk=5        causal, Sq=5, Sk=2
        k0 k1 k2 k3 k4            k0 k1
    q0   1  1  1  1  0        q0   0  0     <- no allowed key: O = 0, LSE = -inf
    q1   1  1  1  1  1        q1   0  0
                              q2   0  0
                              q3   1  0
                              q4   1  1

Scores are ``s = scale * q·k``; with ``softcap=c`` they become ``c * tanh(s / c)``.
``LSE`` is the natural-log logsumexp of the allowed scores (float32 in the results).
"""

from __future__ import annotations

from typing import Optional

import torch

from .contract import Problem

__all__ = ["allowed_mask", "attention_dense", "attention_backward_dense",
           "forward", "backward"]

# Elements of one score block (queries × keys × heads) the reference materialises at once.
_BLOCK_ELEMENTS = 1 << 24


def allowed_mask(sq: int, sk: int, causal: bool, window: Optional[tuple[int, int]],
                 device, q_start: int = 0, q_end: Optional[int] = None) -> Optional[torch.Tensor]:
    """Boolean (q_end - q_start, sk) mask of allowed keys, or ``None`` if all are allowed."""
    q_end = sq if q_end is None else q_end
    left, right = window if window is not None else (-1, -1)
    if causal:
        right = 0 if right < 0 else min(right, 0)
    if left < 0 and right < 0:
        return None
    i = torch.arange(q_start, q_end, device=device).unsqueeze(1) + (sk - sq)
    j = torch.arange(sk, device=device).unsqueeze(0)
    mask = torch.ones(q_end - q_start, sk, dtype=torch.bool, device=device)
    if right >= 0:
        mask &= j <= i + right
    if left >= 0:
        mask &= j >= i - left
    return mask


def _block_rows(rows_per_q: int, sk: int) -> int:
    return max(16, _BLOCK_ELEMENTS // max(1, rows_per_q * max(sk, 1)))


def _scores(qb: torch.Tensor, k: torch.Tensor, scale: float, softcap: Optional[float],
            mask: Optional[torch.Tensor]):
    """qb: (B, Hk, G, m, D), k: (B, Hk, Sk, D) -> raw scaled scores and capped+masked scores."""
    s = torch.matmul(qb, k.unsqueeze(2).transpose(-1, -2)) * scale  # (B, Hk, G, m, Sk)
    raw = s
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return raw, s


def attention_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                    scale: Optional[float] = None, window: Optional[tuple[int, int]] = None,
                    softcap: Optional[float] = None, compute_dtype: Optional[torch.dtype] = None,
                    out_dtype: Optional[torch.dtype] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference forward for BHSD tensors.

    q: (B, Hq, Sq, D), k: (B, Hk, Sk, D), v: (B, Hk, Sk, Dv) -> O (B, Hq, Sq, Dv) in
    ``out_dtype`` (default q's dtype) and LSE (B, Hq, Sq) float32.  Computes in
    ``compute_dtype`` (default: float32 for 16-bit inputs, else the input dtype).
    """
    B, Hq, Sq, D = q.shape
    Hk, Sk, Dv = k.shape[1], k.shape[2], v.shape[3]
    G = Hq // Hk
    scale = D ** -0.5 if scale is None else scale
    cdt = compute_dtype or (torch.float32 if q.element_size() < 4 else q.dtype)
    odt = out_dtype or q.dtype
    o = torch.zeros(B, Hq, Sq, Dv, dtype=odt, device=q.device)
    lse = torch.full((B, Hq, Sq), float("-inf"), dtype=torch.float32, device=q.device)
    if Sq == 0 or Sk == 0 or B == 0:
        return o, lse
    kc, vc = k.to(cdt), v.to(cdt)
    qg = q.unflatten(1, (Hk, G))  # a view: K/V are never repeated
    og, lg = o.view(B, Hk, G, Sq, Dv), lse.view(B, Hk, G, Sq)
    step = _block_rows(B * Hq, Sk)
    for i0 in range(0, Sq, step):
        i1 = min(Sq, i0 + step)
        mask = allowed_mask(Sq, Sk, causal, window, q.device, i0, i1)
        _, s = _scores(qg[:, :, :, i0:i1].to(cdt), kc, scale, softcap, mask)
        m = torch.logsumexp(s, dim=-1)  # (B, Hk, G, m); -inf for empty rows
        p = torch.exp(s - m.unsqueeze(-1).masked_fill(torch.isinf(m).unsqueeze(-1), 0.0))
        p = p.masked_fill(torch.isinf(m).unsqueeze(-1), 0.0)
        og[:, :, :, i0:i1] = torch.matmul(p, vc.unsqueeze(2)).to(odt)
        lg[:, :, :, i0:i1] = m.float()
    return o, lse


def attention_backward_dense(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             o: torch.Tensor, lse: torch.Tensor, *, causal: bool = False,
                             scale: Optional[float] = None,
                             window: Optional[tuple[int, int]] = None,
                             softcap: Optional[float] = None,
                             dlse: Optional[torch.Tensor] = None,
                             compute_dtype: Optional[torch.dtype] = None):
    """Gradients by recomputation from (q, k, v, O, LSE), FlashAttention-style.

    ``P = exp(S - LSE)``, ``Δ = rowsum(dO ∘ O)``, ``dS = P ∘ (dO Vᵀ - Δ + dLSE)``; the softcap
    chain rule multiplies dS by ``1 - tanh²(s / c)``.  Query blocks keep memory O(block × Sk).
    Returns (dq, dk, dv) in the input dtypes.
    """
    B, Hq, Sq, D = q.shape
    Hk, Sk, Dv = k.shape[1], k.shape[2], v.shape[3]
    G = Hq // Hk
    scale = D ** -0.5 if scale is None else scale
    cdt = compute_dtype or (torch.float32 if q.element_size() < 4 else q.dtype)
    dq = torch.zeros(B, Hk, G, Sq, D, dtype=cdt, device=q.device)
    dk = torch.zeros(B, Hk, Sk, D, dtype=cdt, device=q.device)
    dv = torch.zeros(B, Hk, Sk, Dv, dtype=cdt, device=q.device)
    if Sq and Sk and B:
        kc, vc = k.to(cdt), v.to(cdt)
        qg = q.unflatten(1, (Hk, G))
        dog = do.unflatten(1, (Hk, G))
        lg = lse.unflatten(1, (Hk, G)).to(cdt)
        delta = (do.to(cdt) * o.to(cdt)).sum(-1).unflatten(1, (Hk, G))  # (B, Hk, G, Sq)
        if dlse is not None:
            delta = delta - dlse.to(cdt).unflatten(1, (Hk, G))
        step = _block_rows(B * Hq, Sk)
        for i0 in range(0, Sq, step):
            i1 = min(Sq, i0 + step)
            mask = allowed_mask(Sq, Sk, causal, window, q.device, i0, i1)
            qb = qg[:, :, :, i0:i1].to(cdt)
            raw, s = _scores(qb, kc, scale, softcap, mask)
            lb = lg[:, :, :, i0:i1]
            empty = torch.isinf(lb).unsqueeze(-1)
            p = torch.exp(s - lb.masked_fill(torch.isinf(lb), 0.0).unsqueeze(-1))
            p = p.masked_fill(empty, 0.0)
            dob = dog[:, :, :, i0:i1].to(cdt)
            dv += torch.matmul(p.transpose(-1, -2), dob).sum(2)
            dp = torch.matmul(dob, vc.unsqueeze(2).transpose(-1, -2))
            ds = p * (dp - delta[:, :, :, i0:i1].unsqueeze(-1))
            if softcap is not None:
                ds = ds * (1 - torch.tanh(raw / softcap) ** 2)
            ds = ds * scale
            dq[:, :, :, i0:i1] = torch.matmul(ds, kc.unsqueeze(2))
            dk += torch.matmul(ds.transpose(-1, -2), qb).sum(2)
    return dq.reshape(B, Hq, Sq, D).to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _sequences(problem: Problem):
    cq = problem.cu_seqlens_q.tolist()
    ck = problem.cu_seqlens_k.tolist()
    return list(zip(cq[:-1], cq[1:], ck[:-1], ck[1:]))


def _dense(t: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Varlen slice (total, H, D)[a:b] as a (1, H, S, D) view."""
    return t[a:b].transpose(0, 1).unsqueeze(0)


def forward(q, k, v, problem: Problem, compute_dtype: Optional[torch.dtype] = None):
    """Reference ``(O, LSE)`` for a resolved :class:`Problem` (dense or varlen), in the
    contract's layouts.  ``compute_dtype=torch.float64`` gives the test reference."""
    kw = dict(causal=problem.causal, scale=problem.scale, window=problem.window,
              softcap=problem.softcap, compute_dtype=compute_dtype, out_dtype=problem.out_dtype)
    if problem.is_fp8:
        q, k, v = _dequantize(q, k, v, problem)
    if not problem.is_varlen:
        return attention_dense(q, k, v, **kw)
    o = torch.zeros(q.shape[0], q.shape[1], v.shape[2], dtype=problem.out_dtype, device=q.device)
    lse = torch.full((q.shape[1], q.shape[0]), float("-inf"), dtype=torch.float32, device=q.device)
    for a, b, c, d in _sequences(problem):
        if b == a:
            continue
        ob, lb = attention_dense(_dense(q, a, b), _dense(k, c, d), _dense(v, c, d), **kw)
        o[a:b] = ob[0].transpose(0, 1)
        lse[:, a:b] = lb[0]
    return o, lse


def backward(do, q, k, v, o, lse, problem: Problem, dlse=None,
             compute_dtype: Optional[torch.dtype] = None):
    """Reference ``(dq, dk, dv)`` for a resolved :class:`Problem` (dense or varlen)."""
    kw = dict(causal=problem.causal, scale=problem.scale, window=problem.window,
              softcap=problem.softcap, compute_dtype=compute_dtype)
    if not problem.is_varlen:
        return attention_backward_dense(do, q, k, v, o, lse, dlse=dlse, **kw)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for a, b, c, d in _sequences(problem):
        if b == a or d == c:
            continue
        g = attention_backward_dense(
            _dense(do, a, b), _dense(q, a, b), _dense(k, c, d), _dense(v, c, d),
            _dense(o, a, b), lse[:, a:b].unsqueeze(0),
            dlse=None if dlse is None else dlse[:, a:b].unsqueeze(0), **kw)
        dq[a:b], dk[c:d], dv[c:d] = (t[0].transpose(0, 1) for t in g)
    return dq, dk, dv


def _dequantize(q, k, v, problem: Problem):
    """FP8 inputs times their (B, Hk) descales, as float32 (the reference for FP8 backends)."""
    out = []
    for t, ds in ((q, problem.q_descale), (k, problem.k_descale), (v, problem.v_descale)):
        t = t.float()
        if ds is not None:
            if problem.is_varlen:
                raise NotImplementedError("reference FP8 varlen with descales")
            h = t.shape[1]
            scale = ds.float().repeat_interleave(h // ds.shape[1], dim=1)  # (B, H)
            t = t * scale[:, :, None, None]
        out.append(t)
    return out
