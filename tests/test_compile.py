"""torch.compile(fullgraph=True) of code calling attnhub: dispatch happens inside an opaque
custom op at run time, so tracing never breaks the graph."""

import pytest
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


class _Block(torch.nn.Module):
    """A small attention block: projections, GQA attention through attnhub, output."""

    def __init__(self, backend=None):
        super().__init__()
        self.qkv = torch.nn.Linear(32, 32 + 2 * 16)
        self.out = torch.nn.Linear(32, 32)
        self.backend = backend

    def forward(self, x):
        B, S, _ = x.shape
        q, k, v = self.qkv(x).split([32, 16, 16], dim=-1)
        q = q.view(B, S, 4, 8)
        k, v = k.view(B, S, 2, 8), v.view(B, S, 2, 8)
        o = attnhub.attention(q, k, v, causal=True, layout="bshd", backend=self.backend)
        return self.out(o.reshape(B, S, 32))


@pytest.mark.parametrize("backend", ["naive", None], ids=["naive", "auto"])
def test_module_inductor_no_graph_break_no_recompile(backend):
    torch.manual_seed(2)
    block = _Block(backend)
    x = torch.randn(2, 19, 32, requires_grad=True)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(block)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    compiled = torch.compile(block, fullgraph=True)  # inductor
    got = compiled(x)
    want = block(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    gx, = torch.autograd.grad(got.square().sum(), x)
    wx, = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(gx, wx, rtol=1e-4, atol=1e-5)
    with torch._dynamo.config.patch(error_on_recompile=True):  # same shapes: no recompile
        y = torch.randn(2, 19, 32, requires_grad=True)
        torch.testing.assert_close(compiled(y), block(y), rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_custom_op_opcheck(layout):
    """Fake and real implementations agree (shapes, dtypes, strides), autograd is registered."""
    from attnhub._ops import attention_backward_op, attention_op

    torch.manual_seed(3)
    shape = (2, 4, 11, 8) if layout == "bhsd" else (2, 11, 4, 8)
    q, k, v = (torch.randn(*shape, requires_grad=True) for _ in range(3))
    if layout == "bshd":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    args = (q, k, v, None, None, 0, 0, True, None, -1, -1, None, True, "naive", None, None, None)
    torch.library.opcheck(attention_op, args)
    o, lse = attention_op(*args)
    do = torch.randn_like(o)
    torch.library.opcheck(attention_backward_op, (do, None, q, k, v, o, lse, None, None, 0, 0,
                                                  True, None, -1, -1, None, "naive"),
                          test_utils=("test_schema", "test_faketensor"))  # no double backward
