"""The user-facing calls: :func:`attention` and :func:`attention_varlen`."""

from __future__ import annotations

from typing import Optional

import torch

from . import dispatch, reference
from ._validate import make_problem, make_varlen_problem, tensor_memo
from .contract import FP8_DTYPES, Backend, ContractViolation, Problem, result_violations

__all__ = ["attention", "attention_varlen"]

_DENSE_KW = {"causal", "scale", "window", "softcap", "layout", "return_lse", "backend",
             "q_descale", "k_descale", "v_descale"}
_VARLEN_KW = {"cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k"}


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              scale: Optional[float] = None, window: Optional[tuple[int, int]] = None,
              softcap: Optional[float] = None, layout: str = "bhsd", return_lse: bool = False,
              backend: Optional[str] = None, q_descale: Optional[torch.Tensor] = None,
              k_descale: Optional[torch.Tensor] = None, v_descale: Optional[torch.Tensor] = None):
    """Exact attention ``softmax(scale · Q Kᵀ, masked) V`` on the fastest correct backend.

    Args:
        q: ``(B, Hq, Sq, D)`` (``layout="bshd"``: ``(B, Sq, Hq, D)``); float16, bfloat16,
            float32 (float64 on ``naive``), or float8_e4m3fn with descales.
        k: ``(B, Hk, Sk, D)``; ``Hq`` must be a multiple of ``Hk`` (GQA/MQA).
        v: ``(B, Hk, Sk, Dv)``.
        causal: mask aligned **bottom-right** (flash-attn >= 2.1): query ``i`` sees key ``j``
            iff ``j <= i + Sk - Sq``.  For Sq=2, Sk=5 and Sq=5, Sk=2::

                1 1 1 1 0        0 0   <- rows with no key: O = 0, LSE = -inf
                1 1 1 1 1        0 0
                                 0 0
                                 1 0
                                 1 1
        scale: multiplies ``Q Kᵀ``; ``None`` means ``1 / sqrt(D)``.
        window: ``(left, right)`` local attention: key ``j`` allowed iff
            ``i + Sk - Sq - left <= j <= i + Sk - Sq + right``; ``-1`` leaves a side
            unbounded, ``None`` is ``(-1, -1)``.  Combines with ``causal``.
        softcap: ``c`` replaces each scaled score ``s`` by ``c * tanh(s / c)``.
        layout: ``"bhsd"`` or ``"bshd"``; output uses the same layout (a view, no copy).
        return_lse: also return LSE ``(B, Hq, Sq)`` float32, natural-log logsumexp of the
            allowed scores.
        backend: a backend name to pin (else ``ATTNHUB_BACKEND``, ``use_backend`` or
            auto-dispatch).
        q_descale, k_descale, v_descale: float32 ``(B, Hk)`` for float8 inputs (output bf16).

    Returns:
        ``O`` ``(B, Hq, Sq, Dv)`` in q's dtype (bf16 for FP8), or ``(O, LSE)``.
    """
    if torch.compiler.is_compiling():  # dispatch at run time, inside an opaque custom op
        from ._ops import compiled_attention

        if layout == "bshd":
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        o, lse = compiled_attention(q, k, v, causal=causal, scale=scale, window=window,
                                    softcap=softcap, backend=backend, q_descale=q_descale,
                                    k_descale=k_descale, v_descale=v_descale)
        o = o.transpose(1, 2) if layout == "bshd" else o
        return (o, lse) if return_lse else o
    problem, qb, kb, vb = make_problem(
        q, k, v, causal=causal, scale=scale, window=window, softcap=softcap, layout=layout,
        q_descale=q_descale, k_descale=k_descale, v_descale=v_descale)
    _check_backend_arg(backend)
    o, lse = _run(problem, qb, kb, vb, backend)
    if layout == "bshd":
        o = o.transpose(1, 2)
    return (o, lse) if return_lse else o


def attention_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, max_seqlen_q: int,
                     max_seqlen_k: int, *, causal: bool = False, scale: Optional[float] = None,
                     window: Optional[tuple[int, int]] = None, softcap: Optional[float] = None,
                     return_lse: bool = False, backend: Optional[str] = None,
                     q_descale: Optional[torch.Tensor] = None,
                     k_descale: Optional[torch.Tensor] = None,
                     v_descale: Optional[torch.Tensor] = None):
    """Attention over a packed batch of variable-length sequences (flash-attn's varlen API).

    Args:
        q: ``(total_q, Hq, D)``; sequence ``b`` is ``q[cu_seqlens_q[b]:cu_seqlens_q[b+1]]``.
        k: ``(total_k, Hk, D)``, v: ``(total_k, Hk, Dv)``.
        cu_seqlens_q, cu_seqlens_k: int32 ``(batch + 1,)`` offsets starting at 0.
        max_seqlen_q, max_seqlen_k: at least the longest sequence.
        Other arguments as :func:`attention`; masks apply within each sequence.

    Returns:
        ``O`` ``(total_q, Hq, Dv)``, or ``(O, LSE)`` with LSE ``(Hq, total_q)`` float32.
    """
    if torch.compiler.is_compiling():
        from ._ops import compiled_attention

        o, lse = compiled_attention(
            q, k, v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
            max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, causal=causal, scale=scale,
            window=window, softcap=softcap, backend=backend, q_descale=q_descale,
            k_descale=k_descale, v_descale=v_descale)
        return (o, lse) if return_lse else o
    problem = make_varlen_problem(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=causal,
        scale=scale, window=window, softcap=softcap, q_descale=q_descale, k_descale=k_descale,
        v_descale=v_descale)
    _check_backend_arg(backend)
    o, lse = _run(problem, q, k, v, backend)
    return (o, lse) if return_lse else o


def _check_backend_arg(backend) -> None:
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend={backend!r}: expected None or a backend name (str); "
                        "see attnhub.list_backends()")


def _resolve(q, k, v, kwargs: dict):
    """Validate ``explain``'s arguments like the call they describe."""
    unknown = set(kwargs) - _DENSE_KW - _VARLEN_KW
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; expected some of "
                        f"{sorted(_DENSE_KW | _VARLEN_KW)}")
    kwargs = dict(kwargs)
    pin = kwargs.pop("backend", None)
    kwargs.pop("return_lse", None)
    _check_backend_arg(pin)
    if "cu_seqlens_q" in kwargs:
        args = [kwargs.pop(n) for n in ("cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q",
                                        "max_seqlen_k")]
        kwargs.pop("layout", None)
        problem = make_varlen_problem(q, k, v, *args, **kwargs)
    else:
        problem, q, k, v = make_problem(q, k, v, **kwargs)
    # the tensors the call would hand the backends (timed as such)
    return problem, _unit_head_dim(q), _unit_head_dim(k), _unit_head_dim(v), pin


def _zeros(problem: Problem, q: torch.Tensor):
    if problem.is_varlen:
        o = torch.zeros(problem.seqlen_q, problem.heads_q, problem.head_dim_v,
                        dtype=problem.out_dtype, device=q.device)
        lse = torch.full((problem.heads_q, problem.seqlen_q), float("-inf"),
                         dtype=torch.float32, device=q.device)
    else:
        o = torch.zeros(problem.batch, problem.heads_q, problem.seqlen_q, problem.head_dim_v,
                        dtype=problem.out_dtype, device=q.device)
        lse = torch.full((problem.batch, problem.heads_q, problem.seqlen_q), float("-inf"),
                         dtype=torch.float32, device=q.device)
    return o, lse


def _unit_head_dim(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a copy of it whose head dim (the last) is unit-stride: the one layout
    guarantee a backend gets (see :mod:`attnhub.contract`).  Views without it (``x.mT``,
    a permute) are rare, and torch's own aten attention ops read the last dim as contiguous
    whatever its stride (O came back wrong through them); SDPA and flash-attn copy or refuse
    such views too.  FP8 tensors pass as they are: :func:`attnhub.quantize_fp8` stores V
    sequence-major on purpose (the layout fp8 tensor cores read), and fp8 backends take it."""
    if t.stride(-1) == 1 or t.shape[-1] <= 1 or t.dtype in FP8_DTYPES:
        return t
    return t.contiguous()


def _run(problem: Problem, q, k, v, pin: Optional[str], autograd: bool = True):
    if problem.seqlen_q == 0 or problem.seqlen_k == 0 or problem.batch == 0:
        o, lse = _zeros(problem, q)
        if problem.requires_grad:  # keep the graph connected: zero gradients flow back
            o = o + 0 * (q.sum() + k.sum() + v.sum()).to(o.dtype)
        return o, lse
    q, k, v = _unit_head_dim(q), _unit_head_dim(k), _unit_head_dim(v)
    plan = dispatch.plan_for(problem, q, k, v, backend=pin)
    if problem.requires_grad and autograd:
        return _AttentionFunction.apply(q, k, v, problem, plan)
    return _forward(plan, problem, q, k, v)[:2]


def _padding(problem: Problem) -> Optional[tuple[int, int]]:
    """Where the last sequence ends in q and in k/v, for packed buffers longer than their
    sequences (flash-attn allows it: static buffers for CUDA graphs, fixed-size batches);
    None when they end together.  The rows past the end belong to no sequence: O = 0, LSE =
    -inf, zero gradients -- set here, because kernels leave those rows as they found them
    (torch.empty: triton-fa2 returned O ~ 1e32 there, and dK/dV of 3-4 for keys in no
    sequence)."""
    if not problem.is_varlen:
        return None
    cq, ck = problem.cu_seqlens_q, problem.cu_seqlens_k
    end_q = tensor_memo(cq, "offsets", cq.tolist)[-1]
    end_k = tensor_memo(ck, "offsets", ck.tolist)[-1]
    if end_q == problem.seqlen_q and end_k == problem.seqlen_k:
        return None
    return end_q, end_k


def _forward(plan, problem: Problem, q, k, v):
    """Run the plan's first backend; on failure fall back down the plan (auto only)."""
    last_error: Optional[BaseException] = None
    for backend in list(plan.backends):
        try:
            o, lse = backend.forward(q, k, v, problem)
        except torch.OutOfMemoryError as exc:
            # this call's memory, not the backend's fault: the next backend may need less,
            # but no verdict is recorded (one OOM must not retire a kernel for good)
            if plan.pinned:
                raise
            last_error = exc
            dispatch.note_out_of_memory(backend, problem)
            continue
        except Exception as exc:  # noqa: BLE001
            if plan.pinned:
                raise
            last_error = exc
            dispatch.note_failure(backend, problem, f"raised {type(exc).__name__}: {exc}")
            continue
        bad = result_violations(problem, o, lse)
        if bad:
            message = f"backend {backend.name!r} broke the contract: " + "; ".join(bad)
            if plan.pinned:
                raise ContractViolation(message)
            dispatch.note_failure(backend, problem, message)
            last_error = ContractViolation(message)
            continue
        pad = _padding(problem)
        if pad is not None:
            o[pad[0]:] = 0
            lse[:, pad[0]:] = float("-inf")
        return o, lse, backend
    if isinstance(last_error, torch.OutOfMemoryError):
        raise last_error  # as torch would: the caller can free memory or shrink the batch
    raise RuntimeError(f"every backend failed for {problem.describe()}; last error: "
                       f"{last_error}") from last_error


class _AttentionFunction(torch.autograd.Function):
    """Forward on the planned backend; backward on that backend if it declares one, else the
    core's blockwise recomputation from (q, k, v, O, LSE) — never an S×S buffer."""

    @staticmethod
    def forward(ctx, q, k, v, problem: Problem, plan):
        o, lse, backend = _forward(plan, problem, q, k, v)
        ctx.set_materialize_grads(False)  # an unused LSE gives dlse=None: no check, no sync
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.problem, ctx.backend = problem, backend
        return o, lse

    @staticmethod
    def backward(ctx, do, dlse):
        q, k, v, o, lse = ctx.saved_tensors
        # create_graph=True (gradient penalties, meta-learning): the gradients must carry a
        # graph themselves, and a kernel's do not (they would count as constants and the
        # second-order terms would be silently dropped)
        dq, dk, dv = _backward(ctx.backend, ctx.problem, do, dlse, q, k, v, o, lse,
                               differentiable=torch.is_grad_enabled())
        return dq, dk, dv, None, None


def _backward(backend: Backend, problem: Problem, do, dlse, q, k, v, o, lse,
              differentiable: bool = False):
    """The backend's own backward if it declares one, else the core's recomputation (which
    also carries a gradient flowing into LSE, and, torch operations on (q, k, v, O, LSE),
    is the one that is itself differentiable)."""
    if do is None:
        do = torch.zeros_like(o)
    q, k, v, o, do = (_unit_head_dim(t) for t in (q, k, v, o, do))
    # (the compiled path's op receives a zero tensor for an unused LSE: a check, inside the op)
    has_dlse = dlse is not None and bool(torch.any(dlse != 0))
    if backend.capabilities.backward and not has_dlse and not differentiable:
        dq, dk, dv = backend.backward(do, q, k, v, o, lse, problem)
        pad = _padding(problem)
        if pad is not None:  # rows in no sequence (see _padding)
            dq[pad[0]:], dk[pad[1]:], dv[pad[1]:] = 0, 0, 0
        return dq, dk, dv
    return reference.backward(do, q, k, v, o, lse, problem, dlse=dlse if has_dlse else None)
