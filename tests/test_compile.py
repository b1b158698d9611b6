"""torch.compile(fullgraph=True) of code calling attnhub: dispatch happens inside an opaque
custom op at run time, so tracing never breaks the graph."""

import torch

import attnhub


def test_fullgraph_forward_and_backward_match_eager():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 24, 16, requires_grad=True) for _ in range(3))
    kv = [t[:, :2].detach().requires_grad_() for t in (k, v)]

    def f(a, b, c):
        o, lse = attnhub.attention(a, b, c, causal=True, window=(5, -1), softcap=3.0,
                                   return_lse=True)
        return (o.square().sum() + lse.sum() * 0.1)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(q, *kv), (q, *kv))
    want = torch.autograd.grad(f(q, *kv), (q, *kv))
    for a, b in zip(got, want):
        assert (a - b).abs().max() < 1e-5


def test_fullgraph_bshd_and_varlen():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 9, 2, 8) for _ in range(3))
    f = torch.compile(lambda a, b, c: attnhub.attention(a, b, c, layout="bshd"),
                      fullgraph=True, backend="aot_eager")
    assert torch.allclose(f(q, k, v), attnhub.attention(q, k, v, layout="bshd"), atol=1e-6)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    qp, kp, vp = (torch.randn(9, 2, 8) for _ in range(3))
    g = torch.compile(lambda a, b, c: attnhub.attention_varlen(a, b, c, cu, cu, 5, 5,
                                                               causal=True),
                      fullgraph=True, backend="aot_eager")
    want = attnhub.attention_varlen(qp, kp, vp, cu, cu, 5, 5, causal=True)
    assert torch.allclose(g(qp, kp, vp), want, atol=1e-6)
