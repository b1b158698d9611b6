"""hopper-fa3's warp-specialised CUDA forward (``fa3_fwd.cu``).

On the CPU: the source compiles for sm_90a with the machine's ``nvcc`` for every shipped
tile, with no local-memory spills and without ptxas serialising the wgmma pipeline (the
warning that silently costs the overlap); the generated wgmma wrappers; which problems the
CUDA path refuses and why.  On an sm90 GPU: the tolerance rule on awkward shapes, every
tile, both layouts and dtypes, determinism, and the path through ``attnhub.attention``.
"""

import re
import shutil

import pytest
import torch

from attnhub.contract import Problem
from attnhub_hopper import cuda_fwd, wgmma_ptx
from attnhub_hopper.cuda_check import _Cuda  # the CUDA forward; poisons O/LSE memory first

ON_SM90 = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
needs_sm90 = pytest.mark.skipif(not ON_SM90, reason="needs an sm90 (Hopper) GPU")
NVCC = shutil.which("nvcc")


def _problem(B=1, Hq=2, Hk=2, Sq=64, Sk=64, D=128, Dv=None, dtype=torch.bfloat16,
             device="cpu", **kw):
    return Problem(B, Hq, Hk, Sq, Sk, D, Dv or D, dtype, torch.device(device),
                   scale=kw.pop("scale", D ** -0.5), **kw)


def _qkv(p, layout="bhsd"):
    def make(H, S, D):
        if layout == "bshd":
            return torch.randn(p.batch, S, H, D, device=p.device).to(p.dtype).transpose(1, 2)
        return torch.randn(p.batch, H, S, D, device=p.device).to(p.dtype)
    return (make(p.heads_q, p.seqlen_q, p.head_dim), make(p.heads_kv, p.seqlen_k, p.head_dim),
            make(p.heads_kv, p.seqlen_k, p.head_dim_v))


# -- CPU ------------------------------------------------------------------------------------
@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("shipped", sorted(cuda_fwd.shipped_tiles()),
                         ids=lambda k: f"d{k[0]}-{'causal' if k[1] else 'full'}-{k[2]}")
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=("bf16", "fp16"))
def test_nvcc_compiles_for_sm90a(shipped, dtype):
    D, causal, tile = shipped
    report = cuda_fwd.nvcc_check(D, tile, causal, dtype)
    assert "0 bytes spill stores" in report and "0 bytes stack frame" in report, report
    # C7510-C7519: ptxas serialised or patched the wgmma pipeline
    assert not re.search(r"C751\d", report), report
    assert cuda_fwd.smem_bytes(D, tile.block_n, tile.stages) <= cuda_fwd._SMEM_LIMIT


def test_default_tiles_follow_the_measurements():
    assert cuda_fwd.default_tile(64, False, 16384) == cuda_fwd.Tile(192, 2, True)
    assert cuda_fwd.default_tile(128, False, 2048).pingpong
    assert cuda_fwd.default_tile(128, False, 16384) == cuda_fwd.Tile(176, 2)
    assert all(cuda_fwd.smem_bytes(d, t.block_n, t.stages) <= cuda_fwd._SMEM_LIMIT
               for d, _, t in cuda_fwd.shipped_tiles())


def test_wgmma_wrappers_list_every_accumulator():
    text = wgmma_ptx.header([176], [128], "bf16")
    assert "m64n176k16.f32.bf16.bf16" in text and "m64n128k16.f32.bf16.bf16" in text
    # 88 accumulators for the n176 product, then descriptors and the scale flag
    assert "%87}" in text and '"+f"(d[87])' in text and '"=f"(d[87])' in text
    assert "p, 1, 1, 1;" in text  # rs: B (V) read N-major
    with pytest.raises(ValueError, match="dtype"):
        wgmma_ptx.header([64], [64], "fp8")


@pytest.mark.parametrize("change,needle", [
    (dict(window=(16, 0)), "window"),
    (dict(softcap=30.0), "softcap"),
    (dict(D=96), "head dims"),
    (dict(D=128, Dv=64), "head dims"),
    (dict(scale=-1.0), "scale"),
    (dict(dtype=torch.float32), "dtype"),
    (dict(B=70000, Sq=1, Sk=1), "65535"),
])
def test_unsupported_problems_give_reasons(change, needle):
    p = _problem(**change)
    q, k, v = _qkv(p)
    why = cuda_fwd.unsupported_reason(q, k, v, p)
    assert why is not None and needle in why


def test_varlen_and_misaligned_are_refused():
    cu = torch.tensor([0, 30, 64], dtype=torch.int32)
    p = _problem(B=2, Sq=64, Sk=64, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=34,
                 max_seqlen_k=34)
    t = torch.randn(64, 2, 128).to(torch.bfloat16)
    assert "varlen" in cuda_fwd.unsupported_reason(t, t, t, p)
    p = _problem()
    q, k, v = _qkv(p)
    odd = torch.randn(1, 2, 64, 129).to(torch.bfloat16)[..., 1:]  # base off 16 bytes
    assert "aligned" in cuda_fwd.unsupported_reason(odd, k, v, p)
    # a well-formed CPU problem gets as far as the device check
    assert cuda_fwd.unsupported_reason(q, k, v, p) == "not a CUDA tensor"


def test_env_switch_turns_it_off(monkeypatch):
    p = _problem()
    q, k, v = _qkv(p)
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA", "0")
    assert cuda_fwd.unsupported_reason(q, k, v, p) == "ATTNHUB_HOPPER_CUDA=0"


def test_listing_says_which_forward_without_importing_cupy(monkeypatch):
    from attnhub_hopper import HopperFA3Backend

    def boom():
        raise AssertionError("extra_info imported CuPy")
    monkeypatch.setattr(cuda_fwd, "_import_reason", boom)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    forward = HopperFA3Backend().extra_info()["forward"]
    assert forward.startswith("Triton") and "cupy is not installed" in forward
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA", "0")
    assert "ATTNHUB_HOPPER_CUDA=0" in HopperFA3Backend().extra_info()["forward"]


# -- GPU ------------------------------------------------------------------------------------
def _gpu_cases():
    out = []
    for D in (64, 128, 256):
        for causal in (False, True):
            for sq, sk in ((113, 203), (1023, 1024), (1, 4096), (4096, 1), (300, 100)):
                out.append(dict(D=D, causal=causal, Sq=sq, Sk=sk))
            out.append(dict(D=D, causal=causal, Sq=1024, Sk=1100, Hq=8, Hk=2))
            out.append(dict(D=D, causal=causal, Sq=2000, Sk=2000, Hq=16, Hk=16))
            out.append(dict(D=D, causal=causal, Sq=1500, Sk=200, Hq=32, Hk=8))
            out.append(dict(D=D, causal=causal, Sq=777, Sk=777, Hq=4, Hk=1, layout="bshd"))
            out.append(dict(D=D, causal=causal, Sq=1023, Sk=1024, dtype=torch.float16))
    return out


@needs_sm90
@pytest.mark.gpu
@pytest.mark.parametrize("case", _gpu_cases(), ids=lambda c: "-".join(
    f"{k}{v}" for k, v in c.items() if k not in ("dtype",)) + ("-fp16" if "dtype" in c else ""))
def test_cuda_forward_tolerance(case):
    from attnhub.testing.tolerance import assert_matches_reference, random_inputs

    case = dict(case)
    layout = case.pop("layout", "bhsd")
    p = _problem(B=2, Hq=case.pop("Hq", 4), Hk=case.pop("Hk", 4), device="cuda", **case)
    q, k, v = random_inputs(p, layout=layout)
    assert_matches_reference(_Cuda(), q, k, v, p)


@needs_sm90
@pytest.mark.gpu
@pytest.mark.parametrize("D,tile", [(64, (128, 2, True)), (64, (192, 2, False)),
                                    (128, (176, 2)), (128, (176, 2, True)),
                                    (256, (64, 2, True)), (256, (80, 2, True))],
                         ids=str)
@pytest.mark.parametrize("causal", (False, True), ids=("full", "causal"))
def test_cuda_forward_every_tile(D, tile, causal):
    from attnhub.testing.tolerance import assert_matches_reference, random_inputs

    p = _problem(B=2, Hq=4, Hk=2, Sq=1023, Sk=1031, D=D, device="cuda", causal=causal)
    q, k, v = random_inputs(p)
    assert_matches_reference(_Cuda(cuda_fwd.Tile(*tile)), q, k, v, p)


@needs_sm90
@pytest.mark.gpu
def test_cuda_forward_is_deterministic_and_used_by_the_backend():
    import attnhub

    p = _problem(B=2, Hq=8, Hk=2, Sq=2000, Sk=2000, D=128, device="cuda", causal=True)
    q, k, v = _qkv(p)
    o1, l1 = cuda_fwd.forward(q, k, v, p)
    o2, l2 = cuda_fwd.forward(q, k, v, p)
    assert torch.equal(o1, o2) and torch.equal(l1, l2)
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
    o = attnhub.attention(qg, kg, vg, causal=True, backend="hopper-fa3")
    assert torch.equal(o, o1)  # the backend's forward is this kernel
    o.float().square().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (qg, kg, vg))


def test_check_script_plots_a_results_json(tmp_path):
    pytest.importorskip("matplotlib")
    from attnhub_hopper import cuda_check

    rows = [dict(D=d, S=s, causal=c, default_tflops=500.0 + s / 1024,
                 peers={"cudnn": 550.0, "flash": 300.0, "triton-hopper": 400.0})
            for d in (64, 128) for s in (1024, 4096) for c in (False, True)]
    js = tmp_path / "r.json"
    js.write_text(__import__("json").dumps(dict(device="GPU", date="today", grid=rows)))
    cuda_check.plot(str(js), str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
