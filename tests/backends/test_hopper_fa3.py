"""hopper-fa3: the kernel's logic on the CPU (Triton interpreter, tiny shapes, both the TMA
descriptor path and the pointer path) and the tolerance-rule grid on an sm90 GPU.

CPU cases call ``attnhub_hopper.ops.forward`` directly (the backend itself declares only
``cuda``); GPU cases go through the backend class, forward and backward.
"""

import os

import pytest
import torch

from attnhub.contract import Problem
from attnhub.testing.tolerance import assert_matches_reference, random_inputs

triton = pytest.importorskip("triton")

from attnhub_hopper import HopperFA3Backend  # noqa: E402

BACKEND = HopperFA3Backend()
CAPS = BACKEND.capabilities
ON_SM90 = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
needs_interpreter = pytest.mark.skipif(not INTERPRET, reason="CPU cases need TRITON_INTERPRET=1 "
                                       "set before triton is imported (tests/conftest.py)")
needs_sm90 = pytest.mark.skipif(not ON_SM90, reason="needs an sm90 (Hopper) GPU")


def _problem(B, Hq, Hk, Sq, Sk, D, Dv=None, dtype=torch.bfloat16, device="cpu", **kw):
    Dv = Dv or D
    return Problem(B, Hq, Hk, Sq, Sk, D, Dv, dtype, torch.device(device),
                   scale=kw.pop("scale", D ** -0.5), **kw)


def _varlen_problem(lens_q, lens_k, Hq, Hk, D, dtype=torch.bfloat16, device="cpu", **kw):
    cu_q = torch.tensor([0] + lens_q).cumsum(0).to(torch.int32).to(device)
    cu_k = torch.tensor([0] + lens_k).cumsum(0).to(torch.int32).to(device)
    return _problem(len(lens_q), Hq, Hk, sum(lens_q), sum(lens_k), D, dtype=dtype,
                    device=device, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                    max_seqlen_q=max(lens_q), max_seqlen_k=max(lens_k), **kw)


class _Kernel:
    """ops.forward with a fixed tile config and path, in the backend interface."""

    name = "hopper-fa3"

    def __init__(self, config=None, use_tma=None):
        self.config, self.use_tma = config, use_tma

    def forward(self, q, k, v, problem):
        from attnhub_hopper import ops

        return ops.forward(q, k, v, problem, config=self.config, use_tma=self.use_tma)


def _cfg(block_m=32, block_n=32, pipe_qk=False):
    from attnhub_hopper.ops import Config

    return Config(block_m, block_n, 4, 1, pipe_qk=pipe_qk)


def _id(p, extra=""):
    dt = str(p.dtype).replace("torch.", "")
    s = f"hopper-fa3-{p.device.type}-{dt}-d{p.head_dim}"
    if p.head_dim_v != p.head_dim:
        s += f"v{p.head_dim_v}"
    s += f"-s{p.seqlen_q}x{p.seqlen_k}-h{p.heads_q}/{p.heads_kv}"
    if p.scale != p.head_dim ** -0.5:
        s += f"-scale{p.scale:g}"
    return "-".join([s, *p.features(), extra]).strip("-")


# -- CPU: the kernel under the interpreter ----------------------------------------------
def _cpu_cases():
    cases = []
    for D in CAPS.head_dims:
        for causal in (False, True):
            dt = torch.bfloat16 if causal else torch.float16
            cases.append((_problem(1, 4, 2, 113, 203, D, dtype=dt, causal=causal), {}))
    cases += [
        (_problem(1, 2, 1, 1023, 1024, 64, causal=True), dict(cfg=_cfg(64, 64))),  # MQA
        (_problem(2, 3, 3, 203, 113, 64, causal=True), {}),  # rows with no key
        (_problem(1, 4, 4, 97, 160, 64, window=(17, 5)), {}),
        (_problem(1, 4, 2, 150, 150, 96, causal=True, window=(40, -1)), {}),
        (_problem(1, 4, 2, 150, 150, 160, window=(40, 7)), {}),
        (_problem(1, 4, 2, 113, 203, 224, softcap=5.0), {}),
        (_problem(1, 4, 2, 113, 203, 64, softcap=5.0, causal=True), {}),
        (_problem(1, 4, 2, 113, 203, 192, 128, causal=True), {}),
        (_problem(1, 4, 2, 113, 203, 128, causal=True), dict(layout="bshd")),
        (_problem(1, 4, 2, 113, 203, 64, causal=True), dict(tma=False)),
        (_problem(1, 4, 2, 113, 203, 64, window=(30, 30)), dict(tma=False)),
        (_problem(1, 4, 2, 160, 203, 128), dict(cfg=_cfg(32, 32, pipe_qk=True))),
        (_problem(1, 4, 2, 160, 203, 64, causal=True), dict(cfg=_cfg(32, 16, pipe_qk=True))),
        (_varlen_problem([37, 0, 90], [50, 20, 64], 4, 2, 64, causal=True), {}),
        (_varlen_problem([37, 64, 9], [50, 64, 80], 4, 4, 128), dict(tma=False)),
        # negative scales (the CUDA forward refuses scale <= 0, so these run here): the
        # block max is scale * min(qk); with scale * max P overflowed fp16 (O = inf)
        (_problem(1, 4, 2, 113, 203, 64, dtype=torch.float16, scale=-0.37), {}),
        (_problem(1, 4, 2, 113, 203, 128, dtype=torch.float16, causal=True, scale=-1.0), {}),
        (_problem(1, 4, 2, 113, 203, 64, dtype=torch.float16, scale=0.0), {}),
        # head dim not unit-stride (transposed views): TMA cannot address them
        (_problem(1, 4, 2, 67, 90, 64, causal=True), dict(layout="strided-d")),
        (_problem(1, 4, 2, 67, 90, 64), dict(layout="strided-d", tma=False)),
    ]
    return cases


@needs_interpreter
@pytest.mark.parametrize("problem,opts", _cpu_cases(),
                         ids=[_id(p, "-".join(f"{k}={v}" for k, v in o.items() if k != "cfg")
                                  + ("-" + str(o["cfg"]) if "cfg" in o else ""))
                              for p, o in _cpu_cases()])
def test_kernel_cpu_interpreter(problem, opts):
    g = torch.Generator().manual_seed(1234)
    layout = opts.get("layout", "bhsd")
    q, k, v = random_inputs(problem, generator=g, layout="bhsd" if layout == "strided-d"
                            else layout)
    if layout == "strided-d":
        q, k, v = (t.mT.contiguous().mT for t in (q, k, v))
        assert q.stride(-1) != 1
    kern = _Kernel(opts.get("cfg", _cfg()), use_tma=opts.get("tma"))
    assert_matches_reference(kern, q, k, v, problem)


@needs_interpreter
@pytest.mark.parametrize("varlen", (False, True), ids=("dense", "varlen"))
def test_kernel_cpu_rows_whose_offsets_pass_int32(varlen):
    """q and v whose rows pass 2**31 elements within one (sequence, head) (a long BSHD
    sequence as the int32 offsets see it): head-major copies, head-major varlen O (the
    pointer paths segfaulted under the interpreter before)."""
    from attnhub.testing.tolerance import long_rows_view

    p = (_varlen_problem([10, 14], [16, 14], 4, 2, 32, dtype=torch.float16, causal=True)
         if varlen else _problem(1, 4, 2, 24, 30, 32, dtype=torch.float16, causal=True))
    q, k, v = random_inputs(p, generator=torch.Generator().manual_seed(8))
    rows_q = p.max_seqlen_q if varlen else p.seqlen_q
    rows_k = p.max_seqlen_k if varlen else p.seqlen_k
    q, v = long_rows_view(q, rows_q), long_rows_view(v, rows_k)
    assert_matches_reference(_Kernel(_cfg(16, 16), use_tma=False), q, k, v, p)


@needs_interpreter
@pytest.mark.parametrize("causal", (False, True), ids=("full", "causal"))
@pytest.mark.parametrize("tma", (False, True), ids=("pointers", "tma"))
@pytest.mark.parametrize("sign", (1, -1), ids=("scale", "negative-scale"))
def test_kernel_cpu_fp8(causal, tma, sign):
    from attnhub.fp8 import quantize_fp8
    from attnhub_hopper.fp8_rule import check_fp8

    B, Hq, Hk, Sq, Sk, D = 1, 4, 2, 70, 96, 64
    g = torch.Generator().manual_seed(7)
    f = quantize_fp8(torch.randn(B, Hq, Sq, D, generator=g),
                     torch.randn(B, Hk, Sk, D, generator=g), torch.randn(B, Hk, Sk, D, generator=g))
    p = _problem(B, Hq, Hk, Sq, Sk, D, dtype=torch.float8_e4m3fn, causal=causal,
                 scale=sign * D ** -0.5, q_descale=f.q_descale, k_descale=f.k_descale,
                 v_descale=f.v_descale)
    ok, info = check_fp8(_Kernel(_cfg(), use_tma=tma), f.q, f.k, f.v, p)
    print(info)
    assert ok, info


# -- capabilities, probe, reasons (CPU) --------------------------------------------------
@pytest.mark.parametrize("d", (40, 59, 72, 111, 320), ids=lambda d: f"d{d}")
def test_unsupported_head_dims_have_reasons(d):
    reasons = CAPS.reasons(_problem(1, 2, 2, 16, 16, d, device="cuda" if ON_SM90 else "cpu"))
    assert any(f"head_dim={d}" in r and "64,96,128,160,192,224,256" in r for r in reasons), reasons


def test_grid_and_int32_limits_are_refused():
    """The Triton forward's grid is (m, head, batch): each of batch and heads at most
    65535 (batch * heads may pass it); rows past int32 offsets even head-major."""
    assert any("65535" in r for r in BACKEND.not_supported_reasons(
        _problem(65536, 2, 2, 8, 8, 64)))
    assert not BACKEND.not_supported_reasons(_problem(40000, 4, 4, 8, 8, 64))
    assert any("2**31" in r for r in BACKEND.not_supported_reasons(
        _problem(1, 2, 2, 1 << 24, 8, 128)))


def test_fp8_varlen_and_e5m2_are_refused():
    p = _varlen_problem([4, 5], [4, 5], 2, 2, 64, dtype=torch.float8_e4m3fn)
    assert any("varlen" in r for r in BACKEND.not_supported_reasons(p))
    p = _problem(1, 2, 2, 16, 16, 64, dtype=torch.float8_e5m2)
    assert any("e4m3" in r for r in BACKEND.not_supported_reasons(p))


def test_probe_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert BACKEND.probe() == "no CUDA device"


def test_probe_on_other_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    assert BACKEND.probe() == "needs an sm90 GPU (Hopper); found NVIDIA A100-SXM4-80GB (sm80)"


# -- GPU: the backend, forward and backward ----------------------------------------------
def _gpu_cases():
    cases = []
    for D in CAPS.head_dims:
        for sq, sk in ((113, 203), (1023, 1024)):
            for causal in (False, True):
                hq, hk = ((4, 4), (8, 2), (4, 1))[(D + sq + causal) % 3]  # MHA, GQA, MQA
                cases.append((_problem(2, hq, hk, sq, sk, D, device="cuda", causal=causal), {}))
    cases += [
        (_problem(1, 4, 4, 2048, 2048, 128, device="cuda", causal=True), {}),
        (_problem(2, 4, 2, 300, 100, 64, device="cuda", causal=True), {}),
        (_problem(2, 4, 2, 1023, 1024, 128, device="cuda", causal=True), dict(layout="bshd")),
        (_problem(2, 4, 2, 1023, 1024, 128, dtype=torch.float16, device="cuda"), {}),
        (_problem(2, 4, 2, 1023, 1024, 128, device="cuda", window=(64, 0)), {}),
        (_problem(2, 4, 2, 1023, 1024, 64, device="cuda", softcap=30.0, causal=True), {}),
        (_problem(2, 4, 2, 1023, 1024, 192, 128, device="cuda", causal=True), {}),
        (_varlen_problem([300, 0, 723], [512, 33, 479], 8, 2, 128, device="cuda", causal=True),
         {}),
        # scale <= 0 (the CUDA kernels refuse it; the Triton forward's NEG_SCALE block max)
        (_problem(2, 4, 2, 1023, 1024, 64, dtype=torch.float16, device="cuda", scale=-0.37), {}),
        (_problem(2, 4, 2, 1023, 1024, 128, dtype=torch.float16, device="cuda", causal=True,
                  scale=-1.0), {}),
        (_problem(2, 4, 2, 300, 400, 256, device="cuda", scale=0.0), {}),
        # 160 / 224 (declared since the CUDA forward serves them on the next kernel up): the
        # cases that run the Triton forward there (window, softcap, varlen) and GQA + BSHD
        (_problem(2, 4, 2, 1023, 1024, 160, device="cuda", window=(64, 0)), {}),
        (_problem(2, 4, 2, 1023, 1024, 224, device="cuda", softcap=30.0, causal=True), {}),
        (_varlen_problem([300, 0, 723], [512, 33, 479], 8, 2, 224, device="cuda", causal=True),
         {}),
        (_problem(2, 8, 2, 1023, 1024, 160, device="cuda", causal=True), dict(layout="bshd")),
    ]
    return cases


@needs_sm90
@pytest.mark.parametrize("problem,opts", _gpu_cases() if ON_SM90 else [],
                         ids=[_id(p, "-".join(f"{k}={v}" for k, v in o.items()))
                              for p, o in (_gpu_cases() if ON_SM90 else [])])
def test_backend_gpu(problem, opts):
    torch.manual_seed(problem.seqlen_q * 31 + problem.head_dim)
    q, k, v = random_inputs(problem, layout=opts.get("layout", "bhsd"))
    assert_matches_reference(BACKEND, q, k, v, problem, backward=not problem.is_varlen)


@needs_sm90
@pytest.mark.parametrize("D", (64, 128, 256), ids=lambda d: f"d{d}")
@pytest.mark.parametrize("causal", (False, True), ids=("full", "causal"))
def test_backend_gpu_fp8(D, causal):
    from attnhub.fp8 import quantize_fp8
    from attnhub_hopper.fp8_rule import check_fp8

    torch.manual_seed(D + causal)
    B, Hq, Hk, Sq, Sk = 2, 8, 2, 1000, 1024
    f = quantize_fp8(torch.randn(B, Hq, Sq, D, device="cuda"),
                     torch.randn(B, Hk, Sk, D, device="cuda"),
                     torch.randn(B, Hk, Sk, D, device="cuda"))
    p = _problem(B, Hq, Hk, Sq, Sk, D, dtype=torch.float8_e4m3fn, device="cuda",
                 causal=causal, q_descale=f.q_descale, k_descale=f.k_descale,
                 v_descale=f.v_descale)
    ok, info = check_fp8(BACKEND, f.q, f.k, f.v, p)
    print(info)
    assert ok, info


@needs_sm90
def test_public_api_fp8_end_to_end():
    import attnhub

    q, k, v = (torch.randn(1, 4, 512, 128, device="cuda", dtype=torch.bfloat16)
               for _ in range(3))
    f = attnhub.quantize_fp8(q, k, v)
    o = attnhub.attention(f.q, f.k, f.v, causal=True, backend="hopper-fa3", **f.descales())
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                           is_causal=True)
    assert o.dtype == torch.bfloat16
    rel = ((o.float() - ref).norm() / ref.norm()).item()
    print(f"fp8 vs fp32 relative error {rel:.3e}")
    assert rel < 0.05
