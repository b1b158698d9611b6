"""The flash-attn tolerance rule, shared by every backend's tests and the conformance kit.

Reference: the contract's semantics computed in float64 (float32 on devices without float64).
Baseline: the same reference computed in the inputs' own low precision (what "torch's own
attention in this dtype" gets wrong).  A backend passes when, for O, LSE and each gradient,

    max|backend - reference| <= 2 * max|baseline - reference| + atol

with a small ``atol`` floor so float32 inputs (whose baseline error is ~1e-7) are not held
to an impossible bound.  For FP8 inputs the baseline is a plain FP8 kernel (float32 scores and
softmax, P rounded to e4m3 for P·V): see :func:`baseline_forward`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from .. import reference
from ..contract import Problem

__all__ = ["Comparison", "compare", "compare_forward", "compare_backward", "baseline_forward",
           "check_forward", "check_backward", "assert_matches_reference", "random_inputs",
           "long_rows_view"]

# Floors for the absolute error bound, per dtype (well below a real bug's error).
_ATOL = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 2e-3,
    torch.bfloat16: 1e-2,
}


@dataclasses.dataclass
class Comparison:
    """Max and mean errors of one output against the fp64 reference."""

    what: str
    max_err: float
    mean_err: float
    baseline_max_err: float
    bound: float

    @property
    def ok(self) -> bool:
        return self.max_err <= self.bound

    def __str__(self) -> str:
        flag = "ok" if self.ok else "FAIL"
        return (f"{self.what:>4}: max {self.max_err:.3e} mean {self.mean_err:.3e} "
                f"(baseline {self.baseline_max_err:.3e}, bound {self.bound:.3e}) {flag}")


def _err(a: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    a, ref = a.double(), ref.double()
    finite = torch.isfinite(ref)
    # -inf must match -inf exactly (fully masked rows); compare the rest numerically.
    mismatch = (~finite & (a != ref)).any().item() or (~torch.isfinite(a) & finite).any().item()
    if mismatch:
        return float("inf"), float("inf")
    if not finite.any():
        return 0.0, 0.0
    d = (a - ref).abs()[finite]
    return d.max().item(), d.mean().item()


def _ref_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def compare(name: str, got: torch.Tensor, ref: torch.Tensor, baseline: torch.Tensor,
            dtype: torch.dtype, factor: float = 2.0) -> Comparison:
    max_err, mean_err = _err(got, ref)
    base_err, _ = _err(baseline, ref)
    atol = _ATOL.get(dtype, 1e-2)
    return Comparison(name, max_err, mean_err, base_err, factor * base_err + atol)


def random_inputs(problem: Problem, *, generator: Optional[torch.Generator] = None,
                  layout: str = "bhsd", requires_grad: bool = False):
    """Fresh random q, k, v for ``problem`` (dense BHSD views of a ``layout`` buffer, or
    varlen packed tensors)."""
    dt = problem.dtype
    dev = problem.device
    kw = dict(device=dev, dtype=torch.float32)

    def make(*shape):
        t = torch.randn(*shape, generator=generator, **kw) if generator is None or \
            generator.device == torch.device(dev.type) else \
            torch.randn(*shape, generator=generator, dtype=torch.float32).to(dev)
        return t.to(dt)

    if problem.is_varlen:
        q = make(problem.seqlen_q, problem.heads_q, problem.head_dim)
        k = make(problem.seqlen_k, problem.heads_kv, problem.head_dim)
        v = make(problem.seqlen_k, problem.heads_kv, problem.head_dim_v)
    elif layout == "bshd":
        q = make(problem.batch, problem.seqlen_q, problem.heads_q, problem.head_dim).transpose(1, 2)
        k = make(problem.batch, problem.seqlen_k, problem.heads_kv, problem.head_dim).transpose(1, 2)
        v = make(problem.batch, problem.seqlen_k, problem.heads_kv, problem.head_dim_v).transpose(1, 2)
    else:
        q = make(problem.batch, problem.heads_q, problem.seqlen_q, problem.head_dim)
        k = make(problem.batch, problem.heads_kv, problem.seqlen_k, problem.head_dim)
        v = make(problem.batch, problem.heads_kv, problem.seqlen_k, problem.head_dim_v)
    if requires_grad:
        q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    return q, k, v


def long_rows_view(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` ((1, H, S, D) or varlen (total, H, D)) copied into a view whose sequence stride
    puts ``rows`` rows of one (sequence, head) past 2**31 elements: what a BSHD tensor of a
    few hundred thousand tokens looks like to a kernel's in-sequence int32 offsets, with a
    few rows.  The buffer behind it is gigabytes of ``torch.empty`` of which only those rows
    are written, so (on Linux, which allocates pages on first touch) it costs little memory."""
    seq_dim = 2 if t.dim() == 4 else 0
    if t.dim() == 4 and t.shape[0] != 1:
        raise ValueError(f"long_rows_view: dense t must have batch 1, got {tuple(t.shape)}")
    stride = -(-(2 ** 31 + 64) // max(rows - 1, 1) // 64) * 64
    h, d = t.shape[1], t.shape[-1]  # heads are dim 1 in both layouts
    stride = max(stride, h * d)
    n = t.shape[seq_dim]
    buf = torch.empty(n * stride, dtype=t.dtype, device=t.device)
    if t.dim() == 4:
        view = torch.as_strided(buf, t.shape, (0, d, stride, 1))
    else:
        view = torch.as_strided(buf, t.shape, (stride, d, 1))
    return view.copy_(t)


def baseline_forward(q, k, v, problem: Problem):
    """The low-precision baseline of the tolerance rule: the reference computed in the inputs'
    own dtype; for FP8 inputs, what a plain FP8 kernel does (scores and softmax in float32,
    P rounded to e4m3 for the P·V product, output bfloat16)."""
    if problem.is_fp8:
        return _fp8_baseline(q, k, v, problem)
    return reference.forward(q, k, v, problem, compute_dtype=problem.dtype)


def _fp8_baseline(q, k, v, problem: Problem):
    if problem.is_varlen:  # per-sequence FP8 baseline not written: fall back to float32
        return reference.forward(q, k, v, problem, compute_dtype=torch.float32)
    qf, kf, vf = reference._dequantize(q, k, v, problem)
    G = problem.group_size
    kf, vf = kf.repeat_interleave(G, dim=1), vf.repeat_interleave(G, dim=1)
    s = torch.matmul(qf, kf.transpose(-1, -2)) * problem.scale
    if problem.softcap is not None:
        s = problem.softcap * torch.tanh(s / problem.softcap)
    mask = reference.allowed_mask(problem.seqlen_q, problem.seqlen_k, problem.causal,
                                  problem.window, q.device)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    empty = torch.isinf(m)
    p = torch.exp(s - m.masked_fill(empty, 0.0)).masked_fill(empty, 0.0)
    denom = p.sum(dim=-1, keepdim=True)
    p8 = p.to(torch.float8_e4m3fn).float()
    o = (torch.matmul(p8, vf) / denom.masked_fill(empty, 1.0)).masked_fill(empty, 0.0)
    lse = (m + torch.log(denom)).squeeze(-1).masked_fill(empty.squeeze(-1), float("-inf"))
    return o.to(problem.out_dtype), lse.float()


def compare_forward(o, lse, q, k, v, problem: Problem, factor: float = 2.0) -> list[Comparison]:
    """Compare a backend's ``(o, lse)`` for ``(q, k, v)`` with the reference (tolerance rule)."""
    ref_o, ref_lse = reference.forward(q, k, v, problem, compute_dtype=_ref_dtype(q.device))
    base_o, base_lse = baseline_forward(q, k, v, problem)
    dt = problem.out_dtype
    return [compare("O", o, ref_o, base_o, dt, factor),
            compare("LSE", lse, ref_lse, base_lse, torch.float32 if dt == torch.float32 else dt,
                    factor)]


def compare_backward(grads, do, q, k, v, problem: Problem,
                     factor: float = 2.0) -> list[Comparison]:
    """Compare a backend's ``(dq, dk, dv)`` for upstream gradient ``do`` with the reference."""
    rdt = _ref_dtype(q.device)
    ro, rl = reference.forward(q, k, v, problem, compute_dtype=rdt)
    ref = reference.backward(do.to(rdt), q.to(rdt), k.to(rdt), v.to(rdt), ro.to(rdt), rl,
                             problem, compute_dtype=rdt)
    bo, bl = reference.forward(q, k, v, problem, compute_dtype=problem.dtype)
    base = reference.backward(do, q, k, v, bo, bl, problem, compute_dtype=problem.dtype)
    return [compare(n, g, r, b, problem.dtype, factor)
            for n, g, r, b in zip(("dQ", "dK", "dV"), grads, ref, base)]


def check_forward(backend, q, k, v, problem: Problem, factor: float = 2.0) -> list[Comparison]:
    """Run ``backend.forward`` and compare O and LSE with the reference (tolerance rule)."""
    o, lse = backend.forward(q, k, v, problem)
    return compare_forward(o, lse, q, k, v, problem, factor)


def check_backward(backend, q, k, v, problem: Problem, factor: float = 2.0,
                   do: Optional[torch.Tensor] = None) -> list[Comparison]:
    """Run ``backend.forward`` + ``backend.backward`` and compare dQ, dK, dV."""
    o, lse = backend.forward(q, k, v, problem)
    if do is None:
        do = torch.randn(o.shape, dtype=torch.float32, device=o.device).to(o.dtype)
    grads = backend.backward(do, q, k, v, o, lse, problem)
    return compare_backward(grads, do, q, k, v, problem, factor)


def assert_matches_reference(backend, q, k, v, problem: Problem, *, backward: bool = False,
                             factor: float = 2.0) -> list[Comparison]:
    """Forward (and optionally backward) checks; prints every error, then asserts."""
    results = check_forward(backend, q, k, v, problem, factor)
    if backward:
        results += check_backward(backend, q, k, v, problem, factor)
    report = "\n".join(str(c) for c in results)
    print(f"{getattr(backend, 'name', backend)} {problem.describe()}\n{report}")
    bad = [c for c in results if not c.ok]
    assert not bad, f"{problem.describe()}: outside the tolerance rule:\n{report}"
    return results
