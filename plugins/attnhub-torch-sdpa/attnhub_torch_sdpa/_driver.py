"""attnhub's bottom-right causal mask on top of kernels whose ``is_causal`` is top-left.

With ``off = Sk - Sq``, query ``i`` may see keys ``j <= i + off``.  Top-left causal (``j <= i``)
is the same mask only when ``Sq == Sk``, so the other two cases are reduced to square or
unmasked calls, without materialising a mask::

    Sq > Sk (off < 0)                     Sq < Sk (off > 0)
        k0 k1 k2                              k0 k1 | k2 k3 k4
    q0   .  .  .   } -off rows see no key  q0  1  1 |  1  .  .
    q1   .  .  .   } -> O = 0, LSE = -inf  q1  1  1 |  1  1  .
    q2   1  .  .   } the rest: top-left    q2  1  1 |  1  1  1
    q3   1  1  .   } causal on the         unmasked | top-left causal,
    q4   1  1  1   } square q[-Sk:] x K    keys[:off] | square, keys[off:]

For ``Sq < Sk`` the two partial results are merged through their LSEs::

    LSE = logaddexp(LSE1, LSE2)      O = exp(LSE1 - LSE) * O1 + exp(LSE2 - LSE) * O2

and the backward runs each part with the merged O and LSE (the ops recompute
``P = exp(S - LSE)``, which is then the true probability of each key), summing dQ and
concatenating dK/dV.  A kernel with ``native_bottom_right`` (FlashAttention-2) takes every
case in one call; its +inf LSE for rows with no key is turned into the contract's -inf.
"""

from __future__ import annotations

import torch

from ._kernels import SubKernel


def _unit_last(t):
    """``t`` with a unit stride along the head dim (a copy only if it has none): torch's
    aten attention ops read the last dim as contiguous whatever its stride (the CPU flash op
    in torch 2.13 returned O off by 3.6 for a ``v.transpose(-1, -2)`` view); the public
    ``scaled_dot_product_attention`` makes that copy itself before calling them."""
    return t if t.stride(-1) == 1 or t.shape[-1] <= 1 else t.contiguous()


def _empty_result(q, v):
    B, H, Sq, _ = q.shape
    o = torch.zeros(B, H, Sq, v.shape[3], dtype=q.dtype, device=q.device)
    lse = torch.full((B, H, Sq), float("-inf"), dtype=torch.float32, device=q.device)
    return o, lse


def _merge(o1, lse1, o2, lse2):
    lse = torch.logaddexp(lse1, lse2)
    w1 = torch.exp(lse1 - lse).unsqueeze(-1)
    w2 = torch.exp(lse2 - lse).unsqueeze(-1)
    o = (o1.float() * w1).add_(o2.float() * w2).to(o1.dtype)
    return o, lse


def forward(kernel: SubKernel, q, k, v, problem):
    """O (B, Hq, Sq, Dv) and LSE (B, Hq, Sq) float32 for a dense problem."""
    B, _, Sq, _ = q.shape
    Sk = k.shape[2]
    scale = problem.scale
    if B == 0 or Sq == 0 or Sk == 0:
        return _empty_result(q, v)
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    if not problem.causal or Sq == Sk:
        return kernel.forward(q, k, v, problem.causal, scale)
    if kernel.native_bottom_right:
        o, lse = kernel.forward(q, k, v, True, scale)
        if Sq > Sk:  # rows with no key: O = 0 (already, made sure) and LSE +inf -> -inf
            o[:, :, : Sq - Sk] = 0
            lse = lse.masked_fill(lse == float("inf"), float("-inf"))
        return o, lse
    if Sq > Sk:
        n = Sq - Sk
        o_tail, lse_tail = kernel.forward(q[:, :, n:], k, v, True, scale)
        o, lse = _empty_result(q, v)
        o[:, :, n:] = o_tail
        lse[:, :, n:] = lse_tail
        return o, lse
    off = Sk - Sq
    o1, lse1 = kernel.forward(q, k[:, :, :off], v[:, :, :off], False, scale)
    o2, lse2 = kernel.forward(q, k[:, :, off:], v[:, :, off:], True, scale)
    return _merge(o1, lse1, o2, lse2)


def backward(kernel: SubKernel, do, q, k, v, o, lse, problem):
    """(dq, dk, dv) shaped like (q, k, v), from the forward's O and LSE."""
    B, _, Sq, _ = q.shape
    Sk = k.shape[2]
    scale = problem.scale
    if B == 0 or Sq == 0 or Sk == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    q, k, v, o = _unit_last(q), _unit_last(k), _unit_last(v), _unit_last(o)
    if do.stride() != o.stride():
        # cuDNN bakes O's and dO's strides into the backward graph it caches per q/k/v
        # layout: every sub-kernel gets dO laid out like O (one copy when they differ).
        do = torch.empty_like(o).copy_(do)
    if not problem.causal or Sq == Sk or kernel.native_bottom_right:
        return kernel.backward(do, q, k, v, o, lse, problem.causal, scale)
    if Sq > Sk:
        n = Sq - Sk
        dq_tail, dk, dv = kernel.backward(do[:, :, n:], q[:, :, n:], k, v, o[:, :, n:],
                                          lse[:, :, n:], True, scale)
        dq = torch.zeros_like(q)
        dq[:, :, n:] = dq_tail
        return dq, dk, dv
    off = Sk - Sq
    dq1, dk1, dv1 = kernel.backward(do, q, k[:, :, :off], v[:, :, :off], o, lse, False, scale)
    dq2, dk2, dv2 = kernel.backward(do, q, k[:, :, off:], v[:, :, off:], o, lse, True, scale)
    dq = (dq1.float() + dq2.float()).to(q.dtype)
    return dq, torch.cat([dk1, dk2], dim=2), torch.cat([dv1, dv2], dim=2)
