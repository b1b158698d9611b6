"""torch-sdpa specifics: bottom-right causal over torch's top-left kernels, FlashAttention-2's
LSE conventions (emulated on the CPU), sub-kernel choice and refusals, registration."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch

import attnhub
from attnhub import reference
from attnhub.testing import assert_matches_reference, random_inputs

import attnhub_torch_sdpa
from attnhub_torch_sdpa import TorchSDPABackend, _kernels

CPU = torch.device("cpu")
NAMES = {"torch-sdpa": "TorchSDPABackend", "torch-sdpa-flash": "TorchSDPAFlashBackend",
         "torch-sdpa-cudnn": "TorchSDPACudnnBackend",
         "torch-sdpa-efficient": "TorchSDPAEfficientBackend"}
SHAPES = [(113, 203), (203, 113), (1, 7), (7, 1), (64, 64)]
HEADS = [(4, 4), (4, 2), (3, 1)]  # MHA, GQA, MQA
HEAD_DIMS = [40, 59, 72, 96, 111]
CPU_DTYPES = [d for d in TorchSDPABackend.capabilities.dtypes
              if d in _kernels.CPU_FLASH.dtypes]


def _problem(sq, sk, hq, hk, d, dtype, causal=True, dv=None, device=CPU, batch=2):
    return attnhub.Problem(batch=batch, heads_q=hq, heads_kv=hk, seqlen_q=sq, seqlen_k=sk,
                           head_dim=d, head_dim_v=dv or d, dtype=dtype, device=device,
                           causal=causal, scale=d ** -0.5, requires_grad=True)


def _name(dtype):
    return str(dtype).replace("torch.", "")


def _check(backend, problem, layout="bshd"):
    gen = torch.Generator().manual_seed(problem.seqlen_q * 1000 + problem.seqlen_k)
    q, k, v = random_inputs(problem, generator=gen, layout=layout)
    assert_matches_reference(backend, q, k, v, problem, backward=True)


def _ids(pairs, fmt):
    return [fmt % p for p in pairs]


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=_name)
@pytest.mark.parametrize("hq, hk", HEADS, ids=_ids(HEADS, "h%dx%d"))
@pytest.mark.parametrize("sq, sk", SHAPES, ids=_ids(SHAPES, "s%dx%d"))
def test_bottom_right_causal_on_cpu(sq, sk, hq, hk, dtype):
    """Sq > Sk (rows with no key), Sq < Sk (split into an unmasked and a square call)."""
    _check(TorchSDPABackend(), _problem(sq, sk, hq, hk, 64, dtype))


@pytest.mark.parametrize("causal", [False, True], ids=("full", "causal"))
def test_a_head_dim_that_is_not_unit_stride(causal):
    """Called directly (attnhub's core already copies such views): the aten ops read the
    head dim as contiguous whatever its stride, so the driver copies ``x.mT``-style views."""
    problem = _problem(67, 90, 4, 2, 64, torch.float32, causal=causal)
    gen = torch.Generator().manual_seed(3)
    q, k, v = (t.mT.contiguous().mT for t in random_inputs(problem, generator=gen))
    assert q.stride(-1) != 1
    assert_matches_reference(TorchSDPABackend(), q, k, v, problem, backward=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=_name)
def test_long_split_with_single_key_part(dtype):
    """(1023, 1024): the unmasked part of the split has one key."""
    _check(TorchSDPABackend(), _problem(1023, 1024, 2, 1, 64, dtype, batch=1))


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=_name)
@pytest.mark.parametrize("d", HEAD_DIMS, ids=lambda d: f"d{d}")
def test_awkward_head_dims_on_cpu(d, dtype):
    _check(TorchSDPABackend(), _problem(113, 203, 4, 2, d, dtype), layout="bhsd")


class _EmulatedFA2(_kernels.Flash):
    """The Flash sub-kernel with its two aten ops replaced by CPU emulations that keep
    FlashAttention-2's conventions: bottom-right ``is_causal``, LSE = +inf on rows with no
    key, and a backward that breaks (exp(+inf)) if handed the contract's -inf."""

    device_type = "cpu"
    dtypes = (torch.float32,)
    min_cc = None

    def available(self):
        return None

    def _forward_op(self, q, k, v, causal, scale):
        o, lse = reference.attention_dense(q, k, v, causal=causal, scale=scale)
        return o, lse.masked_fill(lse == float("-inf"), float("inf"))

    def _backward_op(self, do, q, k, v, o, lse, causal, scale):
        assert not bool((lse == float("-inf")).any()), "FA2 backward given LSE = -inf"
        lse = lse.masked_fill(lse == float("inf"), float("-inf"))  # the reference's convention
        return reference.attention_backward_dense(do, q, k, v, o, lse, causal=causal,
                                                  scale=scale)


class _EmulatedFlashBackend(attnhub_torch_sdpa._TorchSDPABase):
    name = "emulated-flash"
    kernels = (_EmulatedFA2(),)
    capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,),
                                        backward=True)


@pytest.mark.parametrize("sq, sk", SHAPES + [(1023, 1024)], ids=_ids(SHAPES + [(1023, 1024)],
                                                                     "s%dx%d"))
def test_flash_conventions_emulated(sq, sk):
    """The native-bottom-right path (one call, +inf -> -inf and back) without a GPU."""
    _check(_EmulatedFlashBackend(), _problem(sq, sk, 4, 2, 64, torch.float32, batch=1))


def test_refusals_name_the_sub_kernel():
    backend = TorchSDPABackend()
    reasons = backend.not_supported_reasons(_problem(64, 64, 2, 2, 64, torch.float32, dv=40))
    assert reasons == ["cpu-flash: head_dim_v=40 != head_dim=64"]
    assert backend.not_supported_reasons(_problem(64, 64, 2, 2, 64, torch.float32)) == []
    with pytest.raises(ValueError, match="head_dim_v=40"):
        backend.forward(*random_inputs(_problem(8, 8, 1, 1, 64, torch.float32, dv=40)),
                        _problem(8, 8, 1, 1, 64, torch.float32, dv=40))


@pytest.mark.parametrize("scale", [0.0, -0.125])
def test_causal_with_a_scale_at_most_zero_is_refused_and_plain_runs(scale):
    """torch's kernels multiply the causal mask's -inf by the scale: NaN rows for scale <= 0
    (the check below shows it on the CPU kernel; if torch fixes it, the refusal can go).
    Without the mask the same scales match the reference."""
    import dataclasses

    backend = TorchSDPABackend()
    p = dataclasses.replace(_problem(33, 40, 2, 2, 64, torch.float32), scale=scale)
    assert any("scale" in r and "causal" in r for r in backend.not_supported_reasons(p))
    q, k, v = random_inputs(p)
    o, _ = _kernels.CPU_FLASH.forward(q, k, v, True, scale)
    assert torch.isnan(o).any()  # why it is refused
    plain = dataclasses.replace(p, causal=False)
    assert backend.not_supported_reasons(plain) == []
    _check(backend, plain, layout="bhsd")


def test_split_key_lengths():
    p = _problem(1023, 1024, 2, 2, 64, torch.float16)
    assert _kernels.key_lengths(p) == (1, 1023)  # cuDNN refuses the single-key call
    assert _kernels.key_lengths(_problem(203, 113, 2, 2, 64, torch.float16)) == (113,)
    assert _kernels.key_lengths(_problem(10, 20, 2, 2, 64, torch.float16, causal=False)) == (20,)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU messages")
@pytest.mark.parametrize("cls", ["TorchSDPAFlashBackend", "TorchSDPACudnnBackend",
                                 "TorchSDPAEfficientBackend"])
def test_gpu_only_backends_explain_why_not_here(cls):
    reason = getattr(attnhub_torch_sdpa, cls)().probe()
    assert reason and "no CUDA GPU" in reason
    assert TorchSDPABackend().probe() is None  # the CPU kernel is always there


def test_registered_entry_points():
    eps = {ep.name: ep for ep in entry_points(group="attnhub.backends")
           if ep.value.startswith("attnhub_torch_sdpa")}
    assert set(eps) == set(NAMES)
    for name, ep in eps.items():
        cls = ep.load()
        assert cls.__name__ == NAMES[name] and cls.name == name
        assert issubclass(cls, attnhub.Backend)
        info = cls().extra_info()
        assert info["plugin_api"] == attnhub.PLUGIN_API_VERSION and info["kernels"]
