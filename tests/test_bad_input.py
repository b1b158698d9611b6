"""Every bad-input class gets a clear ValueError/TypeError naming the argument."""

import pytest
import torch

import attnhub


def qkv(B=1, Hq=2, Hk=2, Sq=8, Sk=8, D=16, Dv=None, dtype=torch.float32):
    return (torch.randn(B, Hq, Sq, D, dtype=dtype), torch.randn(B, Hk, Sk, D, dtype=dtype),
            torch.randn(B, Hk, Sk, Dv or D, dtype=dtype))


def _raises(exc, match, fn, *a, **kw):
    with pytest.raises(exc, match=match) as info:
        fn(*a, **kw)
    print(f"{exc.__name__}: {info.value}")


CASES = {
    "rank": (ValueError, r"q must be 4-D", lambda: attnhub.attention(torch.randn(2, 8, 16), *qkv()[1:])),
    "batch": (ValueError, r"batch sizes differ", lambda: attnhub.attention(qkv(B=2)[0], *qkv()[1:])),
    "head_dim": (ValueError, r"same head_dim", lambda: attnhub.attention(qkv(D=32)[0], *qkv()[1:])),
    "kv_len": (ValueError, r"same sequence length",
               lambda: attnhub.attention(*qkv()[:2], torch.randn(1, 2, 9, 16))),
    "kv_heads": (ValueError, r"same number of heads",
                 lambda: attnhub.attention(*qkv(Hq=4)[:2], torch.randn(1, 4, 8, 16))),
    "gqa_multiple": (ValueError, r"multiple of heads_kv", lambda: attnhub.attention(*qkv(Hq=3, Hk=2))),
    "dtype_mismatch": (TypeError, r"share one dtype",
                       lambda: attnhub.attention(qkv()[0].half(), *qkv()[1:])),
    "integer": (TypeError, r"q has dtype int64.*floating-point",
                lambda: attnhub.attention(torch.ones(1, 2, 8, 16, dtype=torch.long), *qkv()[1:])),
    "not_tensor": (TypeError, r"k must be a torch.Tensor", lambda: attnhub.attention(qkv()[0], [1], qkv()[2])),
    "device": (ValueError, r"one device",
               lambda: attnhub.attention(qkv()[0], qkv()[1].to("meta"), qkv()[2])),
    "layout": (ValueError, r"layout='bsdh'.*bhsd", lambda: attnhub.attention(*qkv(), layout="bsdh")),
    "backend_unknown": (ValueError, r"unknown backend 'nope'; known: .*naive",
                        lambda: attnhub.attention(*qkv(), backend="nope")),
    "backend_type": (TypeError, r"backend=3", lambda: attnhub.attention(*qkv(), backend=3)),
    "window_shape": (ValueError, r"window=\(1, 2, 3\)", lambda: attnhub.attention(*qkv(), window=(1, 2, 3))),
    "window_value": (ValueError, r"left=-2", lambda: attnhub.attention(*qkv(), window=(-2, 0))),
    "window_type": (ValueError, r"window=", lambda: attnhub.attention(*qkv(), window=(1.5, 0))),
    "softcap": (ValueError, r"softcap=-1", lambda: attnhub.attention(*qkv(), softcap=-1.0)),
    "scale": (TypeError, r"scale=", lambda: attnhub.attention(*qkv(), scale="big")),
    "descale_not_fp8": (ValueError, r"q_descale is only meaningful",
                        lambda: attnhub.attention(*qkv(), q_descale=torch.ones(1, 2))),
    "use_backend_unknown": (ValueError, r"unknown backend 'zzz'",
                            lambda: attnhub.use_backend("zzz").__enter__()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_bad_input(case):
    exc, match, fn = CASES[case]
    _raises(exc, match, fn)


def varlen(cq=(0, 3, 7), ck=(0, 4, 9), mq=4, mk=5, dtype=torch.int32, total_q=7, total_k=9):
    q = torch.randn(total_q, 2, 16)
    k = torch.randn(total_k, 2, 16)
    v = torch.randn(total_k, 2, 16)
    return attnhub.attention_varlen(q, k, v, torch.tensor(cq, dtype=dtype),
                                    torch.tensor(ck, dtype=dtype), mq, mk)


VARLEN = {
    "not_int32": (TypeError, r"cu_seqlens_q must be int32", dict(dtype=torch.int64)),
    "not_zero_start": (ValueError, r"cu_seqlens_q must start at 0", dict(cq=(1, 3, 7))),
    "decreasing": (ValueError, r"cu_seqlens_k must be non-decreasing", dict(ck=(0, 5, 4))),
    "past_end": (ValueError, r"cu_seqlens_q ends at 9, past the tensor's end \(7",
                 dict(cq=(0, 3, 9))),
    "max_too_small": (ValueError, r"max_seqlen_k=3 is smaller than the longest sequence \(5\)",
                      dict(mk=3)),
    "length_mismatch": (ValueError, r"cu_seqlens_k has 4 entries", dict(ck=(0, 4, 6, 9))),
}


@pytest.mark.parametrize("case", sorted(VARLEN))
def test_varlen_bad_input(case):
    exc, match, kw = VARLEN[case]
    _raises(exc, match, varlen, **kw)


def test_varlen_good_input_runs():
    assert varlen().shape == (7, 2, 16)


def test_varlen_rank():
    _raises(ValueError, r"q must be 3-D \(total, H, D\)", attnhub.attention_varlen,
            *qkv(), torch.zeros(2, dtype=torch.int32), torch.zeros(2, dtype=torch.int32), 1, 1)


def test_pinned_backend_that_cannot_run_lists_reasons():
    q, k, v = qkv(dtype=torch.float64)
    with pytest.raises((NotImplementedError, RuntimeError)) as info:
        attnhub.attention(q, k, v, backend="opencl")
    print(info.value)
    assert "opencl" in str(info.value)


def test_offsets_memo_follows_in_place_changes():
    """cu_seqlens are read once per tensor, and again after an in-place change."""
    q = torch.randn(9, 2, 8)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    attnhub.attention_varlen(q, q, q, cu, cu, 5, 5)
    cu[1] = 7  # now one sequence is 7 long: max_seqlen 5 must be refused
    with pytest.raises(ValueError, match="max_seqlen_q=5 is smaller than the longest"):
        attnhub.attention_varlen(q, q, q, cu, cu, 5, 5)
