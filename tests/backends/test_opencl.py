"""The ``opencl`` backend, run for real on the machine's OpenCL device (PoCL on CPU CI).

Forward and backward against the float64 reference with the flash-attn tolerance rule, over
the awkward sizes (head dims 40, 59, 72, 96, 111; (Sq, Sk) = (113, 203), (1023, 1024);
MHA/GQA/MQA) and every declared feature; plus the GPU-style tiling (many work-items per
group, 16 KiB of local memory) forced onto the same device, zero-copy views, refusals, the
build-log error path and device selection.  Each case id names the kernel specialisation it
needs (head dims, dtype): cases share specialisations so PoCL compiles few programs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest
import torch

import attnhub
from attnhub import reference
from attnhub.testing.tolerance import assert_matches_reference, random_inputs

attnhub_opencl = pytest.importorskip("attnhub_opencl")
from attnhub_opencl import OpenCLBackend  # noqa: E402
from attnhub_opencl import _device  # noqa: E402

BACKEND = OpenCLBackend()
_PROBE = BACKEND.probe()
needs_device = pytest.mark.skipif(
    _PROBE is not None, reason=f"no usable OpenCL device: {_PROBE}")

F32, F16 = torch.float32, torch.float16
CPU = torch.device("cpu")


def make_problem(*, b=1, hq=2, hk=2, sq=113, sk=203, d=64, dv=None, dtype=F32, causal=False,
                 window=None, softcap=None, lens=None, scale=None) -> attnhub.Problem:
    """A resolved Problem; ``lens=[(sq_0, sk_0), ...]`` makes it varlen."""
    dv = d if dv is None else dv
    kw = {}
    if lens is not None:
        cu = [torch.tensor([0] + [sum(x[i] for x in lens[:n + 1]) for n in range(len(lens))],
                           dtype=torch.int32) for i in (0, 1)]
        kw = dict(cu_seqlens_q=cu[0], cu_seqlens_k=cu[1],
                  max_seqlen_q=max(x[0] for x in lens), max_seqlen_k=max(x[1] for x in lens))
        b, sq, sk = len(lens), int(cu[0][-1]), int(cu[1][-1])
    return attnhub.Problem(batch=b, heads_q=hq, heads_kv=hk, seqlen_q=sq, seqlen_k=sk,
                           head_dim=d, head_dim_v=dv, dtype=dtype, device=CPU, causal=causal,
                           scale=d ** -0.5 if scale is None else scale, window=window,
                           softcap=softcap, **kw)


# (id, problem, layout, backward).  Layout "bshd": q/k/v are transposed (B, S, H, D) buffers.
CASES = [
    ("d40-f32-mha-113x203-bshd", make_problem(b=2, d=40), "bshd", True),
    ("d59-f32-gqa-causal-113x203", make_problem(hq=4, hk=2, d=59, causal=True), "bhsd", True),
    ("d72-f32-mqa-causal-203x113-masked-rows",
     make_problem(hq=4, hk=1, sq=203, sk=113, d=72, causal=True), "bshd", True),
    ("d96-f32-gqa-window-24-8", make_problem(hq=4, hk=2, d=96, window=(24, 8)), "bhsd", True),
    ("d111-f32-softcap-causal", make_problem(d=111, softcap=8.0, causal=True), "bshd", True),
    ("d64-f32-gqa-causal-1023x1024",
     make_problem(hq=4, hk=2, sq=1023, sk=1024, causal=True), "bshd", True),
    ("d64-f32-mha-1023x1024", make_problem(hq=1, hk=1, sq=1023, sk=1024), "bhsd", False),
    ("d64-f32-window-left-only-causal",
     make_problem(sq=203, sk=203, window=(40, -1), causal=True), "bhsd", True),
    ("d64-f32-window-right-only-203x113", make_problem(sq=203, sk=113, window=(-1, 3)),
     "bhsd", True),
    ("d64-f32-varlen-gqa-causal-empty-seqs",
     make_problem(hq=4, hk=2, causal=True, lens=[(30, 50), (0, 20), (70, 0), (113, 203)]),
     "bhsd", True),
    ("d64-f32-varlen-window-softcap",
     make_problem(lens=[(65, 40), (129, 131)], window=(16, 16), softcap=4.0), "bhsd", True),
    ("d128-dv64-f32-mha", make_problem(d=128, dv=64, sq=67, sk=91), "bshd", True),
    ("d256-f32-gqa-causal", make_problem(hq=4, hk=2, d=256, sq=67, sk=91, causal=True),
     "bhsd", True),
    ("d64-f16-gqa-causal-113x203", make_problem(hq=4, hk=2, dtype=F16, causal=True), "bshd",
     True),
    ("d64-f16-varlen-mqa", make_problem(hq=4, hk=1, dtype=F16, lens=[(33, 47), (113, 203)]),
     "bhsd", True),
    ("d111-f16-window", make_problem(d=111, dtype=F16, window=(8, 0)), "bhsd", True),
]


@needs_device
@pytest.mark.parametrize("problem, layout, backward",
                         [pytest.param(*c[1:], id=f"opencl-cpu-{c[0]}") for c in CASES])
def test_matches_reference(problem, layout, backward):
    assert not BACKEND.capabilities.reasons(problem)
    assert not BACKEND.not_supported_reasons(problem)
    torch.manual_seed(0)
    q, k, v = random_inputs(problem, layout=layout)
    assert_matches_reference(BACKEND, q, k, v, problem, backward=backward)


@needs_device
def test_fully_masked_rows_are_zero_with_minus_inf_lse():
    # causal with Sq > Sk: the first Sq - Sk rows see no key
    problem = make_problem(sq=40, sk=16, causal=True)
    torch.manual_seed(1)
    q, k, v = random_inputs(problem)
    o, lse = BACKEND.forward(q, k, v, problem)
    assert torch.equal(o[:, :, :24], torch.zeros_like(o[:, :, :24]))
    assert torch.isneginf(lse[:, :, :24]).all() and torch.isfinite(lse[:, :, 24:]).all()
    do = torch.randn_like(o)
    dq, _, _ = BACKEND.backward(do, q, k, v, o, lse, problem)
    assert torch.equal(dq[:, :, :24], torch.zeros_like(dq[:, :, :24]))


@needs_device
def test_output_layout_follows_bshd_input():
    problem = make_problem(sq=33, sk=47)
    q, k, v = random_inputs(problem, layout="bshd")
    o, _ = BACKEND.forward(q, k, v, problem)
    # O is a BHSD view of a contiguous BSHD buffer, like q, so o.transpose(1, 2) is contiguous
    assert o.transpose(1, 2).is_contiguous()


@needs_device
def test_strided_views_are_not_copied():
    """USE_HOST_PTR buffers wrap the tensors' own storage: a slice of a packed QKV buffer is
    passed as (storage, offset, strides), never copied."""
    from attnhub_opencl import _runtime

    problem = make_problem(hq=4, hk=4, sq=97, sk=97)
    qkv = torch.randn(1, 97, 3, 4, 64)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    rt = attnhub_opencl._current_runtime()
    bufs = _runtime._Buffers(rt)
    wrapped = {bufs(t).int_ptr for t in (q, k, v)}
    assert len(wrapped) == 1  # one buffer for the one storage
    storage = qkv.untyped_storage()
    host = bufs(q).get_host_array((storage.nbytes(),), _runtime.np.uint8)
    assert host.ctypes.data == storage.data_ptr()
    assert_matches_reference(BACKEND, q, k, v, problem)


@needs_device
def test_autograd_through_attnhub_attention():
    if "opencl" not in {b.name for b in attnhub.list_backends() if b.available}:
        pytest.skip("backend 'opencl' is not registered (pip install -e . registers it)")
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 4, 70, 40, requires_grad=True) for _ in range(3))
    o = attnhub.attention(q, k, v, causal=True, backend="opencl")
    o.square().sum().backward()
    qr, kr, vr = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref, _ = reference.attention_dense(qr, kr, vr, causal=True)
    ref.square().sum().backward()
    for got, want in ((o, ref), (q.grad, qr.grad), (k.grad, kr.grad), (v.grad, vr.grad)):
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)


# -- the GPU-style tiling, forced onto the device under test ----------------------------------
class _ForcedTiles(attnhub.Backend):
    """The opencl backend with a private Runtime whose device limits are overridden."""

    name = "opencl-forced"

    def __init__(self, **limits):
        from attnhub_opencl import _runtime

        self.rt = _runtime.Runtime()
        self.rt.info.update(limits)

    def forward(self, q, k, v, problem):
        return self.rt.forward(q, k, v, problem)

    def backward(self, do, q, k, v, o, lse, problem):
        return self.rt.backward(do, q, k, v, o, lse, problem)


FORCED = [
    # one query row per work-item, 64 work-items sharing K/V tiles through barriers, tiles
    # sized for 16 KiB of local memory: the path GPUs and NPUs take
    ("gpu-style-16k-local-d40-gqa-causal", dict(type="GPU", local_mem_bytes=16 * 1024,
                                               max_work_group_size=64),
     make_problem(hq=4, hk=2, d=40, causal=True)),
    # SIMD rows per work-item with tiles cut down to 32 KiB (CPU runtimes that report little)
    ("cpu-style-32k-local-d111-window", dict(type="CPU", local_mem_bytes=32 * 1024),
     make_problem(d=111, window=(30, 2))),
]


@needs_device
@pytest.mark.parametrize("limits, problem", [pytest.param(*c[1:], id=c[0]) for c in FORCED])
def test_forced_device_limits(limits, problem):
    """Tile choices for other devices, checked for real on the device under test."""
    forced = _ForcedTiles(**limits)
    d, dv = problem.head_dim, problem.head_dim_v
    tiles = forced.rt.tiles(d, dv)
    assert tiles.local_bytes(d, dv) <= limits["local_mem_bytes"]
    if limits["type"] == "GPU":
        assert (tiles.vw, tiles.wg) == (1, limits["max_work_group_size"])
    torch.manual_seed(3)
    q, k, v = random_inputs(problem, layout="bshd")
    assert_matches_reference(forced, q, k, v, problem, backward=True)


@pytest.mark.parametrize("kind", ["GPU", "CPU"])
@pytest.mark.parametrize("local_kib", [16, 32, 48])
@pytest.mark.parametrize("d, dv", [(40, 40), (64, 64), (111, 111), (128, 64), (256, 256)])
def test_tiles_fit_local_memory(kind, local_kib, d, dv):
    info = {"type": kind, "local_mem_bytes": local_kib * 1024, "max_work_group_size": 1024,
            "preferred_vector_width_float": 1 if kind == "GPU" else 16}
    tiles = _device.tiles_for(info, d, dv)
    assert tiles is not None
    assert tiles.local_bytes(d, dv) <= local_kib * 1024
    assert tiles.bn % tiles.nr == 0 and tiles.wg == (128 if kind == "GPU" else 1)


@pytest.mark.parametrize("width, regs_nr", [(16, 8), (8, 6), (4, 6)])
def test_cpu_tiles_follow_vector_width(width, regs_nr):
    info = {"type": "CPU", "local_mem_bytes": 1 << 20, "max_work_group_size": 4096,
            "preferred_vector_width_float": width}
    tiles = _device.tiles_for(info, 64, 64)
    assert (tiles.vw, tiles.nr, tiles.wg) == (width, regs_nr, 1)
    assert tiles.bn % tiles.nr == 0


# -- refusals, errors, device selection ---------------------------------------------------------
def test_refuses_tensors_on_other_devices():
    problem = make_problem()
    for dev in ("cuda", "meta", "mps"):
        p = dataclasses.replace(problem, device=torch.device(dev))
        assert BACKEND.capabilities.reasons(p), dev
        reasons = BACKEND.not_supported_reasons(p)
        assert reasons and "CPU tensors" in reasons[0] and ".cpu()" in reasons[0]


def test_refuses_head_dims_beyond_256_and_bfloat16():
    assert BACKEND.capabilities.reasons(make_problem(d=288))
    assert BACKEND.capabilities.reasons(make_problem(dtype=torch.bfloat16))


@needs_device
def test_build_error_raises_with_build_log():
    from attnhub_opencl import _runtime

    rt = attnhub_opencl._current_runtime()
    bad = dict(D=64, DV=64, DP=64, DVP=64, VW=3, MV=1, NR=4, NC=4, BN=8, WG=1, HALF=0)
    with pytest.raises(_runtime.BuildError) as info:
        rt.build("forward.cl", bad)
    message = str(info.value)
    assert "VW must be 1, 2, 4, 8 or 16" in message  # the #error line, from the build log
    assert "-DVW=3" in message and "forward.cl" in message


@needs_device
def test_device_selection_by_index_and_name(monkeypatch):
    default = _device.find_device("")
    by_index = _device.find_device(default[2].split()[0])  # "P:D"
    assert by_index[1].int_ptr == default[1].int_ptr
    word = default[1].name.split()[0].split("-")[0]
    assert word.lower() in _device.find_device(word)[2].lower()
    with pytest.raises(_device.DeviceNotFound, match="matches no OpenCL device.*seen: 0:0"):
        _device.find_device("no-such-device-xyz")
    with pytest.raises(_device.DeviceNotFound, match="matches no OpenCL device"):
        _device.find_device("97:3")
    # the backend reads the variable and says what went wrong
    monkeypatch.setenv(_device.ENV_DEVICE, "no-such-device-xyz")
    reason = OpenCLBackend().probe()
    assert reason and _device.ENV_DEVICE in reason
    monkeypatch.setenv(_device.ENV_DEVICE, default[2].split()[0])
    assert OpenCLBackend().probe() is None
    assert OpenCLBackend().extra_info()["device"] == default[2]


def test_probe_explains_missing_pyopencl(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopencl", None)  # import pyopencl -> ImportError
    with pytest.raises(_device.DeviceNotFound, match=r"pip install attnhub\[opencl\]"):
        _device.find_device("")


def test_probe_explains_missing_platform(monkeypatch):
    cl = pytest.importorskip("pyopencl")
    monkeypatch.setattr(cl, "get_platforms", lambda: [])
    with pytest.raises(_device.DeviceNotFound, match="apt-get install pocl-opencl-icd"):
        _device.find_device("")


@needs_device
def test_extra_info_reports_device_and_limits():
    info = BACKEND.extra_info()
    for key in ("device", "local_mem_bytes", "max_work_group_size",
                "preferred_vector_width_float", "cl_khr_fp16", "tiles_d64"):
        assert key in info, key
    assert info["local_mem_bytes"] > 0 and math.isfinite(info["compute_units"])


def test_import_has_no_side_effects():
    code = ("import sys, attnhub_opencl; "
            "assert 'pyopencl' not in sys.modules, 'pyopencl imported at import'")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
