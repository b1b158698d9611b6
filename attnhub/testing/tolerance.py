"""The flash-attn tolerance rule, shared by every backend's tests and the conformance kit.

Reference: the contract's semantics computed in float64 (float32 on devices without float64).
Baseline: the same reference computed in the inputs' own low precision (what "torch's own
attention in this dtype" gets wrong).  A backend passes when, for O, LSE and each gradient,

    max|backend - reference| <= 2 * max|baseline - reference| + atol

with a small ``atol`` floor so float32 inputs (whose baseline error is ~1e-7) are not held
to an impossible bound.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from .. import reference
from ..contract import Problem

__all__ = ["Comparison", "compare", "assert_matches_reference", "random_inputs"]

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


def check_forward(backend, q, k, v, problem: Problem, factor: float = 2.0) -> list[Comparison]:
    """Run ``backend.forward`` and compare O and LSE with the reference (tolerance rule)."""
    o, lse = backend.forward(q, k, v, problem)
    ref_o, ref_lse = reference.forward(q, k, v, problem, compute_dtype=_ref_dtype(q.device))
    base_o, base_lse = reference.forward(q, k, v, problem, compute_dtype=problem.dtype
                                         if not problem.is_fp8 else torch.float32)
    dt = problem.out_dtype
    return [compare("O", o, ref_o, base_o, dt, factor),
            compare("LSE", lse, ref_lse, base_lse, torch.float32 if dt == torch.float32 else dt,
                    factor)]


def check_backward(backend, q, k, v, problem: Problem, factor: float = 2.0,
                   do: Optional[torch.Tensor] = None) -> list[Comparison]:
    """Run ``backend.forward`` + ``backend.backward`` and compare dQ, dK, dV."""
    o, lse = backend.forward(q, k, v, problem)
    if do is None:
        do = torch.randn(o.shape, dtype=torch.float32, device=o.device).to(o.dtype)
    dq, dk, dv = backend.backward(do, q, k, v, o, lse, problem)
    rdt = _ref_dtype(q.device)
    ro, rl = reference.forward(q, k, v, problem, compute_dtype=rdt)
    ref = reference.backward(do.to(rdt), q.to(rdt), k.to(rdt), v.to(rdt), ro.to(rdt), rl,
                             problem, compute_dtype=rdt)
    bo, bl = reference.forward(q, k, v, problem, compute_dtype=problem.dtype)
    base = reference.backward(do, q, k, v, bo, bl, problem, compute_dtype=problem.dtype)
    return [compare(n, g, r, b, problem.dtype, factor)
            for n, g, r, b in zip(("dQ", "dK", "dV"), (dq, dk, dv), ref, base)]


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
