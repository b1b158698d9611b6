"""The warp-specialised CUDA forward of ``hopper-fa3`` (``fa3_fwd.cu``): build and launch.

Compiled at run time with NVRTC through CuPy (``-arch=sm_90a``), one module per
(head dim, key-block width, stages, causal, dtype), cached by CuPy in memory per device and
on disk.  TMA tensor maps come from ``cuda.bindings.driver.cuTensorMapEncodeTiled``; the
kernel is launched on torch's current stream with ``cuLaunchKernel``.

What it covers (everything else goes to the Triton kernel in ``kernels.py``, with the
reason in :func:`unsupported_reason`): dense (B, H, S, D) fp16/bf16 inputs, head dim 64,
128 or 256 for both QK and V, causal or not (bottom-right), GQA/MQA, BHSD or BSHD strides
(16-byte aligned), no sliding window, no softcap, positive scale.

``ATTNHUB_HOPPER_CUDA=0`` turns it off.  :func:`nvcc_check` compiles the same source with
``nvcc`` for sm_90a (the CPU CI does this) and returns ptxas's resource report.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import NamedTuple, Optional

import torch

from . import wgmma_ptx

__all__ = ["Tile", "default_tile", "shipped_tiles", "unsupported_reason", "installed_reason",
           "forward", "source", "options", "smem_bytes", "nvcc_check", "enabled"]

_SRC = pathlib.Path(__file__).with_name("fa3_fwd.cu")
_LOG2E = 1.4426950408889634
_SMEM_LIMIT = 232448  # bytes of dynamic shared memory one block may use on sm90

_PRELUDE = "typedef unsigned int u32;\ntypedef unsigned long long u64;\n"


class Tile(NamedTuple):
    """One specialisation: key-block width, pipeline stages, and ping-pong between the two
    consumer warpgroups (FA3 §3.1)."""

    block_n: int
    stages: int
    pingpong: bool = False

    def __str__(self):
        return f"n{self.block_n}s{self.stages}" + ("-pp" if self.pingpong else "")


def default_tile(head_dim: int, causal: bool, seqlen_k: int) -> Tile:
    """The tile measured best on the H100 (NOTES.md, "CUDA forward", runs 2 and 4): ping-pong
    pays at d64 everywhere and at d128 below 8k keys; wide key blocks pay at long sequences;
    d256 runs 80-wide blocks without ping-pong (its gain there was within run-to-run noise)."""
    if head_dim == 64:
        short = seqlen_k <= 1024 or (causal and seqlen_k < 8192)
        return Tile(128 if short else 192, 2, True)
    if head_dim == 128:
        if seqlen_k < 8192:
            return Tile(128, 2, True)
        return Tile(128, 2) if causal else Tile(176, 2)
    return Tile(80, 2)


def shipped_tiles() -> set:
    """Every (head dim, causal, tile) :func:`default_tile` can return."""
    return {(d, c, default_tile(d, c, s)) for d in (64, 128, 256) for c in (False, True)
            for s in (1024, 4096, 16384)}




def enabled() -> bool:
    return os.environ.get("ATTNHUB_HOPPER_CUDA", "1") not in ("0", "")


def smem_bytes(head_dim: int, block_n: int, stages: int) -> int:
    q = 128 * head_dim * 2
    kv = block_n * head_dim * 2
    return q + 2 * stages * kv + 8 * (1 + 4 * stages) + 1024  # + alignment slack


def source(head_dim: int, block_n: int, dtype: torch.dtype) -> str:
    """The full translation unit: typedefs, generated wgmma wrappers, ``fa3_fwd.cu``."""
    name = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(dtype)
    if name is None:
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype}")
    return (_PRELUDE + wgmma_ptx.header([block_n], [head_dim], name) + "\n"
            + _SRC.read_text())


def options(head_dim: int, tile: Tile, causal: bool, dtype) -> tuple:
    return (f"-DHEAD_DIM={head_dim}", f"-DBLOCK_N={tile.block_n}", f"-DSTAGES={tile.stages}",
            f"-DCAUSAL={int(bool(causal))}", f"-DIS_BF16={int(dtype == torch.bfloat16)}",
            f"-DPINGPONG={int(tile.pingpong)}")


def _aligned(t: torch.Tensor) -> bool:
    e = t.element_size()
    return (t.data_ptr() % 16 == 0 and t.stride(-1) == 1
            and all((s * e) % 16 == 0 or n == 1 for s, n in zip(t.stride()[:-1], t.shape[:-1])))


@functools.lru_cache(maxsize=None)
def _import_reason() -> Optional[str]:
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return f"cupy is not importable ({exc}); pip install cupy-cuda13x"
    try:
        from cuda.bindings import driver  # noqa: F401
    except Exception as exc:
        return f"cuda.bindings is not importable ({exc}); pip install cuda-bindings"
    return None


def installed_reason() -> Optional[str]:
    """Why the CUDA forward cannot run here, judged without importing CuPy (for listings,
    which run for every backend at registry load): off, or a package not installed."""
    import importlib.util

    if not enabled():
        return "ATTNHUB_HOPPER_CUDA=0"
    for mod, pip_name in (("cupy", "cupy-cuda13x"), ("cuda.bindings", "cuda-bindings")):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ImportError:  # the parent package is missing
            found = False
        if not found:
            return f"{mod} is not installed; pip install {pip_name}"
    return None


def unsupported_reason(q, k, v, problem) -> Optional[str]:
    """Why the CUDA forward cannot run this problem (None: it can)."""
    if not enabled():
        return "ATTNHUB_HOPPER_CUDA=0"
    if problem.is_varlen:
        return "varlen (cu_seqlens) inputs"
    if problem.is_fp8:
        return "fp8 inputs"
    if problem.dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {problem.dtype}"
    if problem.head_dim != problem.head_dim_v or problem.head_dim not in (64, 128, 256):
        return (f"head dims {problem.head_dim}/{problem.head_dim_v} "
                "(needs equal head dims of 64, 128 or 256)")
    if problem.window is not None:
        return "sliding window"
    if problem.softcap is not None:
        return "softcap"
    if not problem.scale > 0:
        return f"scale {problem.scale} (needs a positive scale)"
    if problem.batch > 65535 or problem.heads_q > 65535:  # the grid's y and z limits
        return f"batch {problem.batch} / heads {problem.heads_q} above 65535"
    if not all(_aligned(t) for t in (q, k, v)):
        return "q/k/v strides or base not 16-byte aligned for TMA"
    if q.device.type != "cuda":
        return "not a CUDA tensor"
    return _import_reason()


@functools.lru_cache(maxsize=None)
def _kernel(device_index: int, head_dim: int, tile: Tile, causal: bool, dtype):
    """(CuPy module, CUfunction, dynamic shared memory bytes) of one specialisation on one
    device; the module is returned so the cache keeps it loaded."""
    import cupy
    from cuda.bindings import driver as cu

    smem = smem_bytes(head_dim, tile.block_n, tile.stages)
    if smem > _SMEM_LIMIT:
        raise ValueError(f"hopper-fa3 CUDA tile d{head_dim} {tile} needs "
                         f"{smem} bytes of shared memory (limit {_SMEM_LIMIT})")
    with cupy.cuda.Device(device_index):
        mod = cupy.RawModule(code=source(head_dim, tile.block_n, dtype),
                             options=("-arch=sm_90a", "-std=c++17")
                             + options(head_dim, tile, causal, dtype),
                             backend="nvrtc")
        fn = mod.get_function("attnhub_fa3_fwd")
        func = cu.CUfunction(fn.kernel.ptr)  # RawKernel -> cupy.cuda.Function
        _check(cu.cuFuncSetAttribute(
            func, cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem))
    return mod, func, smem


def _check(ret):
    from cuda.bindings import driver as cu

    err = ret[0] if isinstance(ret, tuple) else ret
    if err != cu.CUresult.CUDA_SUCCESS:
        _, msg = cu.cuGetErrorString(err)
        raise RuntimeError(f"hopper-fa3 CUDA forward: {err!r} ({msg})")
    return ret[1] if isinstance(ret, tuple) and len(ret) == 2 else ret


def _tensor_map(t: torch.Tensor, box_rows: int):
    """A 4-D TMA map over the (D, S, H, B) view of a (B, H, S, D) tensor, 128B swizzle.
    A map holds only the address, sizes and strides, so maps are reused for tensors that
    share all three (a training step's layers do)."""
    return _encode(t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.element_size(),
                   t.dtype == torch.bfloat16, box_rows)


@functools.lru_cache(maxsize=512)
def _encode(ptr: int, shape: tuple, stride: tuple, e: int, bf16: bool, box_rows: int):
    from cuda.bindings import driver as cu

    B, H, S, D = shape
    strides = []
    for n, s in ((S, stride[2]), (H, stride[1]), (B, stride[0])):
        if n == 1:  # a size-1 dim may carry any stride; TMA wants a 16-byte multiple
            s = D
        strides.append(s * e)
    dt = (cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 if bf16
          else cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16)
    u64, u32 = cu.cuuint64_t, cu.cuuint32_t
    return _check(cu.cuTensorMapEncodeTiled(
        dt, 4, ptr, [u64(x) for x in (D, S, H, B)], [u64(x) for x in strides],
        [u32(64), u32(box_rows), u32(1), u32(1)], [u32(1)] * 4,
        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE))


def _empty_o(q: torch.Tensor, B, H, S, D) -> torch.Tensor:
    """O in q's memory order (BSHD memory for a BSHD view), contiguous either way."""
    if q.stride(1) < q.stride(2):
        return torch.empty(B, S, H, D, dtype=q.dtype, device=q.device).transpose(1, 2)
    return torch.empty(B, H, S, D, dtype=q.dtype, device=q.device)


def forward(q, k, v, problem, tile: Optional[Tile] = None):
    """``(O, LSE)`` of a dense problem :func:`unsupported_reason` accepted."""
    from cuda.bindings import driver as cu

    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    o = _empty_o(q, B, Hq, Sq, D)
    lse = torch.empty(B, Hq, Sq, dtype=torch.float32, device=q.device)
    if o.numel() == 0:
        return o, lse.fill_(float("-inf"))
    if Sk == 0:
        return o.zero_(), lse.fill_(float("-inf"))
    causal = bool(problem.causal)
    tile = tile or default_tile(D, causal, Sk)
    dev = q.device.index if q.device.index is not None else torch.cuda.current_device()
    tile = Tile(*tile)
    _, func, smem = _kernel(dev, D, tile, causal, q.dtype)
    maps = (_tensor_map(q, 128), _tensor_map(k, tile.block_n), _tensor_map(v, tile.block_n),
            _tensor_map(o, 64))
    stream = cu.CUstream(torch.cuda.current_stream(q.device).cuda_stream)
    # kernelParams: an array of pointers to each argument's bytes (the maps' 128-byte
    # storage, ctypes scalars for the rest), laid out as the kernel's signature.
    scalars = (ctypes.c_void_p(lse.data_ptr()), ctypes.c_longlong(lse.stride(0)),
               ctypes.c_longlong(lse.stride(1)), ctypes.c_int(Hq // Hk), ctypes.c_int(Sq),
               ctypes.c_int(Sk), ctypes.c_float(float(problem.scale) * _LOG2E))
    params = (ctypes.c_void_p * (len(maps) + len(scalars)))(
        *[m.getPtr() for m in maps], *[ctypes.addressof(x) for x in scalars])
    _check(cu.cuLaunchKernel(func, math.ceil(Sq / 128), Hq, B, 384, 1, 1, smem, stream,
                             ctypes.addressof(params), 0))
    return o, lse


def nvcc_check(head_dim: int, tile: Tile, causal: bool, dtype,
               nvcc: Optional[str] = None) -> str:
    """Compile the translation unit with ``nvcc`` for sm_90a; returns ptxas's ``-v`` report.
    Raises RuntimeError with the compiler output on failure."""
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc not found on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "fa3_fwd_full.cu")
        src.write_text(source(head_dim, tile.block_n, dtype))
        cmd = [nvcc, "-gencode=arch=compute_90a,code=sm_90a", "-cubin", "-std=c++17",
               "-Xptxas", "-v", *options(head_dim, tile, causal, dtype),
               "-o", str(pathlib.Path(tmp, "out.cubin")), str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        report = res.stdout + res.stderr
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed ({' '.join(cmd)}):\n{report}")
        return report
