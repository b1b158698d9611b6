"""What TMA does with a broadcast (stride-0) dimension, on the lent GPU.

Since 2026-12-06 the first-party kernels keep stride-0 dimensions out of their TMA
descriptors and tensor maps (TMA documents strides of a non-overlapping layout; see
CONTRIBUTING, "Broadcast views").  This probe runs the kernels with such tensors anyway,
with the predicates switched off, and compares each result with the same call on a
contiguous copy.  If TMA reads stride 0 as a broadcast, every row reads "same"; then the
refusal could be relaxed (expanded K/V would keep the fast kernels).  Prints one line per
case; exits 0 whatever TMA does (it is a measurement, not a test).
"""

import torch

from attnhub._validate import make_problem


def _report(name, fn, args, contiguous_args):
    try:
        got = fn(*args)
        want = fn(*contiguous_args)
        diffs = [(a.float() - b.float()).abs().max().item() for a, b in zip(got, want)]
        verdict = "same" if max(diffs) == 0 else f"DIFFERENT (max {max(diffs):.3g})"
        print(f"{name}: {verdict}; per output {['%.3g' % d for d in diffs]}", flush=True)
    except Exception as exc:  # noqa: BLE001 - what TMA does is the question
        print(f"{name}: raised {type(exc).__name__}: {str(exc)[:200]}", flush=True)


def main():
    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    B, H, S, D = 2, 4, 512, 128
    q = torch.randn(B, H, S, D, device=dev, dtype=dt)
    k1, v1 = (torch.randn(1, H, S, D, device=dev, dtype=dt) for _ in range(2))
    kh, vh = (torch.randn(B, 1, S, D, device=dev, dtype=dt) for _ in range(2))
    cases = {"kv-batch": (k1.expand(B, H, S, D), v1.expand(B, H, S, D)),
             "kv-heads": (kh.expand(B, H, S, D), vh.expand(B, H, S, D))}

    from attnhub_hopper import cuda_bwd, cuda_fwd
    from attnhub_hopper import ops as hops

    for name, (k, v) in cases.items():
        p = make_problem(q, k, v, causal=True)[0]
        kc, vc = k.contiguous(), v.contiguous()
        _report(f"hopper-fa3 CUDA forward, {name}",
                lambda q, k, v: cuda_fwd.forward(q, k, v, p), (q, k, v), (q, kc, vc))
        _report(f"hopper-fa3 Triton forward (TMA forced), {name}",
                lambda q, k, v: hops.forward(q, k, v, p, use_tma=True), (q, k, v), (q, kc, vc))
        o, lse = cuda_fwd.forward(q, kc, vc, p)
        do = torch.randn_like(o)
        _report(f"hopper-fa3 CUDA backward, {name}",
                lambda q, k, v: cuda_bwd.backward(do, q, k, v, o, lse, p), (q, k, v),
                (q, kc, vc))

    # dO with broadcast rows (the gradient of (o * w).sum(), w of shape (D,)) through the
    # CUDA backward's tensor map (bypassing _tma_input) and triton-fa2's lean dK/dV kernel
    # (bypassing the row-stride check)
    from attnhub_triton import ops as tops

    k, v = (torch.randn(B, H, S, D, device=dev, dtype=dt) for _ in range(2))
    p = make_problem(q, k, v, causal=True)[0]
    o, lse = cuda_fwd.forward(q, k, v, p)
    do_rows = torch.randn(D, device=dev, dtype=dt).expand(B, H, S, D)
    saved = cuda_bwd._tma_input
    cuda_bwd._tma_input = lambda t: t
    try:
        _report("hopper-fa3 CUDA backward, dO rows broadcast",
                lambda do: cuda_bwd.backward(do, q, k, v, o, lse, p), (do_rows,),
                (do_rows.contiguous(),))
    finally:
        cuda_bwd._tma_input = saved
    q64, k64, v64 = (torch.randn(B, H, S, 64, device=dev, dtype=dt) for _ in range(3))
    p64 = make_problem(q64, k64, v64, causal=True)[0]
    o64, lse64 = tops.flash_forward(q64, k64, v64, p64)
    do64 = torch.randn(64, device=dev, dtype=dt).expand(B, H, S, 64)
    old = tops._tma_ok

    def no_row_check(device, tensors):  # the predicate before 2026-12-06 (sm90 here)
        return all(t.stride(-1) == 1 and t.data_ptr() % 16 == 0
                   and not any((s * t.element_size()) % 16 for s in t.stride()[:-1])
                   for t in tensors)
    tops._tma_ok = no_row_check
    try:
        _report("triton-fa2 lean dK/dV (d64), dO rows broadcast",
                lambda do: tops.flash_backward(do, q64, k64, v64, o64, lse64, p64, "split"),
                (do64,), (do64.contiguous(),))
    finally:
        tops._tma_ok = old


if __name__ == "__main__":
    main()
