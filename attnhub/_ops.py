"""``torch.compile`` support: attention as an opaque ``torch.library.custom_op``.

Under ``torch.compile`` the Python dispatch (registry, context variables, caches) must not be
traced, so :func:`attnhub.attention` calls ``torch.ops.attnhub.attention`` instead.  The op's
implementation runs eagerly at run time and does the full validation and dispatch there (the
stored choice under CUDA-graph capture); its fake implementation only computes output shapes.
Backward is a second op that recomputes from (q, k, v, O, LSE).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import Tensor

from .contract import FP8_DTYPES

__all__ = ["attention_op"]


def _problem(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, wl, wr, softcap, requires_grad,
             q_descale, k_descale, v_descale):
    from ._validate import make_problem, make_varlen_problem

    window = None if (wl, wr) == (-1, -1) else (wl, wr)
    kw = dict(causal=causal, scale=scale, window=window, softcap=softcap,
              q_descale=q_descale, k_descale=k_descale, v_descale=v_descale)
    if cu_q is not None:
        problem = make_varlen_problem(q, k, v, cu_q, cu_k, max_q, max_k, **kw)
    else:
        problem, q, k, v = make_problem(q, k, v, **kw)
    return dataclasses.replace(problem, requires_grad=requires_grad), q, k, v


def _owned_contiguous(result: Tensor, inputs) -> Tensor:
    """``result`` contiguous and not aliasing an input: what the fake implementations
    declare.  Inductor may hand a custom op inputs with other strides than it traced, so an
    output layout that followed the inputs' (or the chosen backend's) could break the
    strides it compiled against; a BSHD result from a backend costs one copy here."""
    if any(result.data_ptr() == t.data_ptr() for t in inputs):
        return result.clone(memory_format=torch.contiguous_format)
    return result.contiguous()


@torch.library.custom_op("attnhub::attention", mutates_args=())
def attention_op(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor],
                 cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
                 causal: bool, scale: Optional[float], window_left: int, window_right: int,
                 softcap: Optional[float], requires_grad: bool, backend: str,
                 q_descale: Optional[Tensor], k_descale: Optional[Tensor],
                 v_descale: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    from .api import _run

    problem, q, k, v = _problem(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                causal, scale, window_left, window_right, softcap, False,
                                q_descale, k_descale, v_descale)
    problem = dataclasses.replace(problem, requires_grad=requires_grad)
    with torch.no_grad():
        o, lse = _run(dataclasses.replace(problem, requires_grad=False)
                      if not requires_grad else problem, q, k, v, backend or None, autograd=False)
    return _owned_contiguous(o, (q, k, v)), lse.contiguous()


@attention_op.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, scale,
      window_left, window_right, softcap, requires_grad, backend, q_descale, k_descale,
      v_descale):
    out_dtype = torch.bfloat16 if q.dtype in FP8_DTYPES else q.dtype
    if cu_seqlens_q is not None:
        o = q.new_empty((q.shape[0], q.shape[1], v.shape[2]), dtype=out_dtype)
        lse = q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)
    else:
        o = q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]), dtype=out_dtype)
        lse = q.new_empty((q.shape[0], q.shape[1], q.shape[2]), dtype=torch.float32)
    return o, lse


@torch.library.custom_op("attnhub::attention_backward", mutates_args=())
def attention_backward_op(do: Tensor, dlse: Optional[Tensor], q: Tensor, k: Tensor, v: Tensor,
                          o: Tensor, lse: Tensor, cu_seqlens_q: Optional[Tensor],
                          cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
                          causal: bool, scale: Optional[float], window_left: int,
                          window_right: int, softcap: Optional[float],
                          backend: str) -> tuple[Tensor, Tensor, Tensor]:
    from . import dispatch
    from .api import _backward

    problem, qb, kb, vb = _problem(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                   max_seqlen_k, causal, scale, window_left, window_right,
                                   softcap, True, None, None, None)
    plan = dispatch.plan_for(problem, qb, kb, vb, backend=backend or None)
    dq, dk, dv = _backward(plan.backends[0], problem, do, dlse, qb, kb, vb, o, lse)
    inputs = (do, q, k, v, o)
    return tuple(_owned_contiguous(g, inputs) for g in (dq, dk, dv))


@attention_backward_op.register_fake
def _(do, dlse, q, k, v, o, lse, *args):
    return tuple(x.new_empty(x.shape) for x in (q, k, v))


def _setup(ctx, inputs, output):
    (q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, wl, wr, softcap, _rg, backend,
     *_descales) = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse, cu_q, cu_k)
    ctx.args = (max_q, max_k, causal, scale, wl, wr, softcap, backend)


def _backward_rule(ctx, do, dlse):
    q, k, v, o, lse, cu_q, cu_k = ctx.saved_tensors
    max_q, max_k, causal, scale, wl, wr, softcap, backend = ctx.args
    dq, dk, dv = attention_backward_op(do, dlse, q, k, v, o, lse, cu_q, cu_k, max_q, max_k,
                                       causal, scale, wl, wr, softcap, backend)
    return (dq, dk, dv) + (None,) * 14


attention_op.register_autograd(_backward_rule, setup_context=_setup)


def compiled_attention(q, k, v, *, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0,
                       max_seqlen_k=0, causal=False, scale=None, window=None, softcap=None,
                       backend=None, q_descale=None, k_descale=None, v_descale=None):
    """The traced path of :func:`attnhub.attention` (tensors already BHSD / packed)."""
    wl, wr = (-1, -1) if window is None else tuple(int(x) for x in window)
    requires_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad
                                                 or v.requires_grad)
    return attention_op(q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q),
                        int(max_seqlen_k), bool(causal), scale, wl, wr, softcap, requires_grad,
                        backend or "", q_descale, k_descale, v_descale)
