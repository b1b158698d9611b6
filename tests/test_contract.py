"""The contract's semantics, checked against an independent float64 oracle."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import attnhub
from attnhub import reference

from ._oracle import oracle


def _close(got, want, atol=1e-9):
    got, want = got.double(), want.double()
    both_inf = torch.isinf(want) & (got == want)
    diff = (got - want).abs().masked_fill(both_inf, 0.0)
    assert not torch.isnan(got).any(), "NaN in output"
    if diff.numel() == 0:
        return
    assert diff.max().item() <= atol, f"max error {diff.max().item():.3e} > {atol}"


@st.composite
def problems(draw):
    hk = draw(st.integers(1, 3))
    group = draw(st.sampled_from([1, 2, 3]))
    d = draw(st.sampled_from([8, 16, 40, 59]))
    dv = draw(st.sampled_from([d, 24]))
    sq = draw(st.integers(0, 40))
    sk = draw(st.integers(0, 45))
    causal = draw(st.booleans())
    window = draw(st.one_of(st.none(), st.tuples(st.integers(-1, 20), st.integers(-1, 20))))
    softcap = draw(st.one_of(st.none(), st.floats(0.5, 30.0)))
    scale = draw(st.one_of(st.none(), st.floats(0.05, 2.0), st.sampled_from([0.0, -0.7])))
    return dict(B=draw(st.integers(1, 2)), hq=hk * group, hk=hk, sq=sq, sk=sk, d=d, dv=dv,
                causal=causal, window=window, softcap=softcap, scale=scale)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.sampled_from(["bhsd", "bshd"]))
def test_naive_matches_oracle(p, layout):
    g = torch.Generator().manual_seed(p["sq"] * 131 + p["sk"])
    q = torch.randn(p["B"], p["hq"], p["sq"], p["d"], generator=g, dtype=torch.float64)
    k = torch.randn(p["B"], p["hk"], p["sk"], p["d"], generator=g, dtype=torch.float64)
    v = torch.randn(p["B"], p["hk"], p["sk"], p["dv"], generator=g, dtype=torch.float64)
    kw = dict(causal=p["causal"], window=p["window"], softcap=p["softcap"], scale=p["scale"])
    want_o, want_lse = oracle(q, k, v, **kw)
    args = (q, k, v) if layout == "bhsd" else tuple(t.transpose(1, 2) for t in (q, k, v))
    o, lse = attnhub.attention(*args, layout=layout, return_lse=True, backend="naive", **kw)
    if layout == "bshd":
        o = o.transpose(1, 2)
    assert o.dtype == torch.float64 and lse.dtype == torch.float32
    _close(o, want_o)
    _close(lse, want_lse.float(), atol=1e-5)


def test_bottom_right_causal_pattern():
    """The docstring's picture: Sq=2, Sk=5 sees keys 0..3 then 0..4; Sq=5, Sk=2 leaves the
    first three rows empty (O = 0, LSE = -inf)."""
    wide = reference.allowed_mask(2, 5, True, None, "cpu")
    assert wide.int().tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    tall = reference.allowed_mask(5, 2, True, None, "cpu")
    assert tall.int().tolist() == [[0, 0], [0, 0], [0, 0], [1, 0], [1, 1]]
    q, k, v = torch.randn(1, 1, 5, 8), torch.randn(1, 1, 2, 8), torch.randn(1, 1, 2, 8)
    o, lse = attnhub.attention(q, k, v, causal=True, return_lse=True)
    assert torch.equal(o[0, 0, :3], torch.zeros(3, 8))
    assert torch.isneginf(lse[0, 0, :3]).all() and torch.isfinite(lse[0, 0, 3:]).all()
    assert not torch.isnan(o).any()


def test_window_pattern():
    m = reference.allowed_mask(4, 6, False, (1, 0), "cpu")
    assert m.int().tolist() == [[0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0],
                                [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]]


@pytest.mark.parametrize("sq,sk", [(0, 5), (5, 0), (0, 0)])
def test_empty_sequences(sq, sk):
    q, k, v = torch.randn(2, 2, sq, 16), torch.randn(2, 2, sk, 16), torch.randn(2, 2, sk, 8)
    o, lse = attnhub.attention(q, k, v, return_lse=True)
    assert o.shape == (2, 2, sq, 8) and lse.shape == (2, 2, sq)
    assert torch.equal(o, torch.zeros_like(o)) and torch.isneginf(lse).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_output_dtype_and_tolerance_rule(dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 33, 40).to(dtype) for _ in range(3))
    o, lse = attnhub.attention(q, k, v, causal=True, return_lse=True)
    assert o.dtype == dtype and lse.dtype == torch.float32
    want, _ = oracle(q, k, v, causal=True)
    err = (o.double() - want).abs().max().item()
    base, _ = reference.attention_dense(q, k, v, causal=True, compute_dtype=dtype)
    base_err = (base.double() - want).abs().max().item()
    print(f"{dtype}: err {err:.3e} baseline {base_err:.3e}")
    assert err <= 2 * base_err + 1e-6


def test_strided_views_of_packed_qkv():
    torch.manual_seed(1)
    qkv = torch.randn(2, 37, 3, 4, 32)  # (B, S, 3, H, D) as a fused projection would give
    q, k, v = qkv.unbind(2)  # non-contiguous BSHD views
    o = attnhub.attention(q, k, v, layout="bshd", causal=True)
    want, _ = oracle(*(t.transpose(1, 2) for t in (q, k, v)), causal=True)
    _close(o.transpose(1, 2), want, atol=1e-5)
    assert o.shape == (2, 37, 4, 32)


@pytest.mark.parametrize("backend", ["naive", "opencl", "torch-sdpa"])
@pytest.mark.parametrize("strided", ["q", "k", "v"])
def test_head_dim_views_are_right_on_every_backend(backend, strided):
    """A view whose head dim is not unit-stride (``x.mT`` of a (B, H, D, S) tensor): torch's
    aten attention ops read the last dim as contiguous whatever its stride, so torch-sdpa
    returned O off by 3.6 (fp16: inf) for such a q, k or v.  The core hands backends a
    unit-stride head dim (copying such a view), as SDPA does, forward and backward."""
    if backend not in {b.name for b in attnhub.list_backends() if b.status == "available"}:
        pytest.skip(f"{backend} is not available here")
    g = torch.Generator().manual_seed(11)
    t = {n: torch.randn(1, 4 if n == "q" else 2, 40, 32, generator=g) for n in "qkv"}
    t[strided] = t[strided].mT.contiguous().mT
    assert t[strided].stride(-1) != 1
    q, k, v = (t[n].requires_grad_() for n in "qkv")
    o = attnhub.attention(q, k, v, causal=True, backend=backend)
    want, _ = oracle(q.detach(), k.detach(), v.detach(), causal=True)
    _close(o, want, atol=2e-5)
    w = torch.randn(o.shape, generator=g)
    got = torch.autograd.grad((o * w).sum(), (q, k, v))
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = torch.autograd.grad((oracle(qd, kd, vd, causal=True)[0] * w.double()).sum(),
                              (qd, kd, vd))
    for a, b in zip(got, ref):
        _close(a, b, atol=5e-5)


@pytest.mark.parametrize("backend", ["naive", "opencl", "torch-sdpa", "triton-fa2",
                                     "hopper-fa3"])
@pytest.mark.parametrize("case", ["kv-batch", "kv-heads", "q-heads", "do-rows"])
def test_broadcast_views_are_right_on_every_backend(backend, case):
    """Expanded (stride-0) inputs as users pass them: K/V shared across the batch or
    expanded over heads for GQA, a q broadcast over heads, and the dO of ``(o * w).sum()``
    for w of shape (D,), whose rows all alias one vector.  TMA documents strides of a
    non-overlapping layout, so the Triton and CUDA kernels keep stride-0 dims away from
    their descriptors (pointer loads, or a copy).  On a GPU machine the tensors live on the
    GPU, where that matters; fp16 there, float32 on the CPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    if backend not in {b.name for b in attnhub.list_backends() if b.status == "available"}:
        pytest.skip(f"{backend} is not available here")
    g = torch.Generator().manual_seed(13)
    B, H, S, D = 2, 4, 80, 64
    one = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)  # noqa: E731
    q, k, v = one(B, H, S, D), one(B, H, S, D), one(B, H, S, D)
    if case == "kv-batch":
        k, v = one(1, H, S, D).expand(B, H, S, D), one(1, H, S, D).expand(B, H, S, D)
    elif case == "kv-heads":
        k, v = one(B, 1, S, D).expand(B, H, S, D), one(B, 1, S, D).expand(B, H, S, D)
    elif case == "q-heads":
        q = one(B, 1, S, D).expand(B, H, S, D)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    try:
        o = attnhub.attention(q, k, v, causal=True, backend=backend)
    except NotImplementedError as exc:  # the backend does not take this device / dtype
        pytest.skip(str(exc).splitlines()[0])
    w = one(D) if case == "do-rows" else one(B, H, S, D)
    got = torch.autograd.grad((o * w).float().sum(), (q, k, v))
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    want, _ = oracle(qd, kd, vd, causal=True)
    ref = torch.autograd.grad((want * w.double()).sum(), (qd, kd, vd))
    # fp16: 1 % of the largest value (a broken stride is off by O(1) of it); float32 5e-5
    for a, b in zip((o, *got), (want.detach(), *ref)):
        largest = max(1.0, b.abs().max().item())
        _close(a, b, atol=1e-2 * largest if dtype == torch.float16 else 5e-5 * largest)


def test_fp8_v_reaches_the_backend_as_quantize_fp8_laid_it_out(monkeypatch):
    """The unit-stride copy above is not for FP8: quantize_fp8 stores V sequence-major on
    purpose (what fp8 tensor cores read), and a copy back would cost the FP8 path two extra
    passes over V."""
    from attnhub import dispatch

    seen = {}

    class Recorder:
        name = "recorder"

        def forward(self, q, k, v, problem):
            seen["v"] = v
            return (torch.zeros(*q.shape[:3], v.shape[-1], dtype=torch.bfloat16),
                    torch.zeros(q.shape[:3]))

    monkeypatch.setattr(dispatch, "plan_for",
                        lambda *a, **kw: dispatch._Plan([Recorder()], pinned=True))
    g = torch.Generator().manual_seed(12)
    f = attnhub.quantize_fp8(*(torch.randn(1, 2, 32, 64, generator=g) for _ in range(3)))
    assert f.v.stride(-2) == 1 and f.v.stride(-1) != 1
    attnhub.attention(f.q, f.k, f.v, q_descale=f.q_descale, k_descale=f.k_descale,
                      v_descale=f.v_descale)
    assert seen["v"].data_ptr() == f.v.data_ptr() and seen["v"].stride() == f.v.stride()


def _varlen_case(g, lens_q, lens_k, hq=4, hk=2, d=16, dtype=torch.float64):
    cq = torch.tensor([0] + list(torch.tensor(lens_q).cumsum(0)), dtype=torch.int32)
    ck = torch.tensor([0] + list(torch.tensor(lens_k).cumsum(0)), dtype=torch.int32)
    q = torch.randn(int(cq[-1]), hq, d, generator=g, dtype=dtype)
    k = torch.randn(int(ck[-1]), hk, d, generator=g, dtype=dtype)
    v = torch.randn(int(ck[-1]), hk, d, generator=g, dtype=dtype)
    return q, k, v, cq, ck


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_matches_per_sequence(causal):
    g = torch.Generator().manual_seed(2)
    lens_q, lens_k = [5, 0, 17, 3], [9, 4, 11, 3]
    q, k, v, cq, ck = _varlen_case(g, lens_q, lens_k)
    o, lse = attnhub.attention_varlen(q, k, v, cq, ck, max(lens_q), max(lens_k), causal=causal,
                                      window=(6, -1), return_lse=True)
    assert o.shape == q.shape and lse.shape == (4, q.shape[0])
    for b in range(4):
        a, e, c, f = cq[b], cq[b + 1], ck[b], ck[b + 1]
        if e == a:
            continue
        want_o, want_lse = oracle(q[a:e].transpose(0, 1)[None], k[c:f].transpose(0, 1)[None],
                                  v[c:f].transpose(0, 1)[None], causal=causal, window=(6, -1))
        _close(o[a:e], want_o[0].transpose(0, 1))
        _close(lse[:, a:e], want_lse[0].float(), atol=1e-5)


@pytest.mark.parametrize("backend", ["naive", "opencl", "triton-fa2"])
def test_varlen_rows_past_the_last_sequence(backend):
    """Packed buffers longer than their sequences (flash-attn allows it: static buffers for
    CUDA graphs): the rows past cu_seqlens[-1] belong to no sequence, so O = 0, LSE = -inf
    and their gradients are 0.  Kernels never write those rows; before the core set them,
    triton-fa2 returned O ~ 1e32 there and dK/dV of 3-4 for keys in no sequence."""
    if backend not in {b.name for b in attnhub.list_backends() if b.status == "available"}:
        pytest.skip(f"{backend} is not available here")
    g = torch.Generator().manual_seed(4)
    lens_q, lens_k = [5, 0, 8], [4, 2, 5]
    q, k, v, cq, ck = _varlen_case(g, lens_q + [3], lens_k + [3], dtype=torch.float32)
    cq, ck = cq[:-1], ck[:-1]  # the last "sequence" becomes 3 padding rows in q and k/v
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    dev = "cuda" if backend == "triton-fa2" and torch.cuda.is_available() else "cpu"
    o, lse = attnhub.attention_varlen(
        *(t.to(dev) for t in (q, k, v, cq, ck)), 8, 5, causal=True, return_lse=True,
        backend=backend)
    o, lse = o.cpu(), lse.cpu()
    assert bool((o[13:] == 0).all()) and bool((lse[:, 13:] == float("-inf")).all())
    w = torch.randn(o.shape, generator=g)
    got = torch.autograd.grad((o * w).sum(), (q, k, v))
    assert all(bool((d[e:] == 0).all()) for d, e in zip(got, (13, 11, 11)))
    for b in range(3):
        a, e, c, f = cq[b], cq[b + 1], ck[b], ck[b + 1]
        if e == a:
            continue
        qs, ks, vs = (t[x:y].detach().double().transpose(0, 1)[None].requires_grad_()
                      for t, x, y in ((q, a, e), (k, c, f), (v, c, f)))
        want_o, want_lse = oracle(qs, ks, vs, causal=True)
        _close(o[a:e], want_o[0].transpose(0, 1), atol=2e-5)
        _close(lse[:, a:e], want_lse[0], atol=2e-5)
        want = torch.autograd.grad((want_o[0].transpose(0, 1) * w[a:e].double()).sum(),
                                   (qs, ks, vs))
        for d, x, y, r in zip(got, (a, c, c), (e, f, f), want):
            _close(d[x:y], r[0].transpose(0, 1), atol=5e-5)


# -- gradients ------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(causal=True), dict(window=(5, 3), softcap=4.0),
                                dict(causal=True, softcap=2.0)], ids=str)
def test_gradients_match_autograd_oracle(kw):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 6, 19, 24, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, 23, 24, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 2, 23, 16, generator=g, dtype=torch.float64, requires_grad=True)
    do = torch.randn(2, 6, 19, 16, generator=g, dtype=torch.float64)
    dlse = torch.randn(2, 6, 19, generator=g, dtype=torch.float64)
    want_o, want_lse = oracle(q, k, v, **kw)
    want = torch.autograd.grad((want_o * do).sum() + (want_lse.nan_to_num(0, 0, 0) * dlse).sum(),
                               (q, k, v))
    o, lse = attnhub.attention(q, k, v, return_lse=True, **kw)
    got = torch.autograd.grad((o * do).sum() + (lse.double().nan_to_num(0, 0, 0) * dlse).sum(),
                              (q, k, v))
    for name, a, b in zip("qkv", got, want):
        _close(a, b, atol=1e-5)


@pytest.mark.parametrize("backend", ["naive", "opencl", "torch-sdpa"])
@pytest.mark.parametrize("kw", [dict(), dict(causal=True)], ids=str)
def test_double_backward_matches_the_oracle(backend, kw):
    """create_graph=True (a gradient penalty on dQ and dK): the second-order terms are right
    on every backend, kernels included -- their gradients carry no graph, so with
    create_graph the core runs the differentiable reference backward instead (before, the
    penalty's gradient silently lost those terms)."""
    if backend not in {b.name for b in attnhub.list_backends() if b.status == "available"}:
        pytest.skip(f"{backend} is not available here")
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 4, 21, 16, generator=g) for _ in range(3))
    q, k, v = q[:, :, :17], k[:, :2], v[:, :2]  # GQA, Sq < Sk (no fully masked rows: the
    w = torch.randn(1, 4, 17, 16, generator=g)  # oracle's softmax has NaN gradients there)

    def penalised(attn, dtype):
        qq, kk, vv = (t.to(dtype).requires_grad_() for t in (q, k, v))
        o = attn(qq, kk, vv)
        gq, gk = torch.autograd.grad((o * w.to(dtype)).sum(), (qq, kk), create_graph=True)
        loss = (o * o).sum() + (gq * gq).sum() + (gk * gk).sum()
        return torch.autograd.grad(loss, (qq, kk, vv))

    want = penalised(lambda a, b, c: oracle(a, b, c, **kw)[0], torch.float64)
    got = penalised(lambda a, b, c: attnhub.attention(a, b, c, backend=backend, **kw),
                    torch.float32)
    for a, b in zip(got, want):
        _close(a, b, atol=2e-5 * max(1.0, b.abs().max().item()))


def test_varlen_gradients():
    g = torch.Generator().manual_seed(4)
    q, k, v, cq, ck = _varlen_case(g, [7, 3], [5, 9])
    for t in (q, k, v):
        t.requires_grad_()
    o = attnhub.attention_varlen(q, k, v, cq, ck, 7, 9, causal=True)
    got = torch.autograd.grad(o.square().sum(), (q, k, v))
    want = [torch.zeros_like(t) for t in (q, k, v)]
    for b in range(2):
        a, e, c, f = cq[b], cq[b + 1], ck[b], ck[b + 1]
        parts = [t[a:e] if i == 0 else t[c:f] for i, t in enumerate((q, k, v))]
        ob, _ = oracle(*(p.transpose(0, 1)[None] for p in parts), causal=True)
        gb = torch.autograd.grad(ob.square().sum(), parts)
        want[0][a:e] += gb[0]
        want[1][c:f] += gb[1]
        want[2][c:f] += gb[2]
    for a, b in zip(got, want):
        _close(a, b, atol=1e-6)


def test_backward_memory_is_blockwise(monkeypatch):
    """The recomputing backward never materialises Sq × Sk at once."""
    monkeypatch.setattr(reference, "_BLOCK_ELEMENTS", 64 * 40)
    seen = []
    real = reference._scores

    def spy(qb, k, *a):
        seen.append(qb.shape[-2] * k.shape[-2])
        return real(qb, k, *a)

    monkeypatch.setattr(reference, "_scores", spy)
    q, k, v = (torch.randn(1, 1, 200, 8, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    attnhub.attention(q, k, v, backend="naive").sum().backward()
    assert seen and max(seen) <= 64 * 200 and max(seen) < 200 * 200


def test_fully_masked_rows_have_zero_gradient():
    q = torch.randn(1, 1, 6, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 1, 3, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 1, 3, 8, dtype=torch.float64, requires_grad=True)
    o = attnhub.attention(q, k, v, causal=True)
    o.sum().backward()
    assert torch.equal(q.grad[0, 0, :3], torch.zeros(3, 8))
    assert not any(torch.isnan(t.grad).any() for t in (q, k, v))


def test_scale_default_is_inverse_sqrt_d():
    q, k, v = (torch.randn(1, 1, 4, 16, dtype=torch.float64) for _ in range(3))
    a = attnhub.attention(q, k, v)
    b = attnhub.attention(q, k, v, scale=1 / math.sqrt(16))
    assert torch.equal(a, b)
